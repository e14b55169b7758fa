//! The console's two languages. Every text a page shows is a field of [`Texts`], so a
//! language that lacks one does not compile.

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    /// Every language, in the order of the switch.
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The BCP 47 tag (`lang=`, the switch's `?lang=`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// Its name in itself, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// A tag as a switch or a cookie gives it (`en`, `zh-CN`; case-insensitive).
    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        match tag.as_str() {
            "en" => Some(Lang::En),
            "zh-cn" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers: the highest-weighted range that is
    /// English or Chinese (any `zh`, as Simplified Chinese), English when none is.
    pub fn negotiate(accept: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        // A header longer than any browser sends is read only so far.
        for range in accept.split(',').take(32) {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::ZhCn
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }
}

/// Every text of the console, in one language.
#[derive(Debug)]
pub(super) struct Texts {
    pub(super) navigation: &'static str,
    pub(super) overview: &'static str,
    pub(super) sign_out: &'static str,
    pub(super) sign_in: &'static str,
    pub(super) sign_in_title: &'static str,
    pub(super) sign_in_hint: &'static str,
    pub(super) admin_token: &'static str,
    pub(super) wrong_token: &'static str,
    pub(super) too_many_attempts: &'static str,
    pub(super) forbidden_title: &'static str,
    pub(super) forbidden: &'static str,
    pub(super) ledger_totals: &'static str,
    pub(super) ledger_unavailable: &'static str,
    pub(super) orders: &'static str,
    pub(super) uses_issued: &'static str,
    pub(super) uses_recorded: &'static str,
    pub(super) tickets_refunded: &'static str,
    pub(super) open_anomalies: &'static str,
    pub(super) relay: &'static str,
    pub(super) relay_lag_events: &'static str,
    pub(super) relay_lag_seconds: &'static str,
}

const EN: Texts = Texts {
    navigation: "Console",
    overview: "Overview",
    sign_out: "Sign out",
    sign_in: "Sign in",
    sign_in_title: "Sign in to the ticketd console",
    sign_in_hint: "Use the admin token this server was started with (--admin-token).",
    admin_token: "Admin token",
    wrong_token: "That is not this server's admin token.",
    too_many_attempts: "Too many sign-in attempts from this address. Wait a minute and try again.",
    forbidden_title: "Refused",
    forbidden: "This form was not sent from a page of this session (its security token is missing or wrong). Nothing was changed; open the page again and repeat the action.",
    ledger_totals: "The ledger",
    ledger_unavailable: "The ledger cannot be read right now",
    orders: "Orders",
    uses_issued: "Uses issued",
    uses_recorded: "Uses recorded",
    tickets_refunded: "Tickets refunded",
    open_anomalies: "Open anomalies",
    relay: "Events relay to NATS",
    relay_lag_events: "Events not yet relayed",
    relay_lag_seconds: "Oldest waiting (seconds)",
};

const ZH_CN: Texts = Texts {
    navigation: "控制台",
    overview: "概览",
    sign_out: "退出登录",
    sign_in: "登录",
    sign_in_title: "登录 ticketd 控制台",
    sign_in_hint: "使用本服务启动时设置的管理令牌（--admin-token）。",
    admin_token: "管理令牌",
    wrong_token: "管理令牌不正确。",
    too_many_attempts: "该地址登录尝试次数过多，请一分钟后再试。",
    forbidden_title: "已拒绝",
    forbidden:
        "该表单并非来自本次会话的页面（安全令牌缺失或错误），未做任何更改。请重新打开页面后再操作。",
    ledger_totals: "账本",
    ledger_unavailable: "暂时无法读取账本",
    orders: "订单",
    uses_issued: "可核销次数",
    uses_recorded: "已核销次数",
    tickets_refunded: "已退票数",
    open_anomalies: "待处理异常",
    relay: "事件推送（NATS）",
    relay_lag_events: "待推送事件",
    relay_lag_seconds: "最早待推送（秒）",
};

impl Texts {
    /// The texts of `lang`.
    pub(super) fn of(lang: Lang) -> &'static Texts {
        match lang {
            Lang::En => &EN,
            Lang::ZhCn => &ZH_CN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhCn);
        assert_eq!(Lang::negotiate("zh-TW"), Lang::ZhCn);
        assert_eq!(Lang::negotiate("fr-FR, en;q=0.5, zh;q=0.4"), Lang::En);
        assert_eq!(Lang::negotiate("en;q=0.2, zh-Hans;q=0.7"), Lang::ZhCn);
        assert_eq!(Lang::negotiate("de, fr"), Lang::En);
        assert_eq!(Lang::negotiate("zh;q=0, en;q=0"), Lang::En);
        assert_eq!(Lang::negotiate(&"x,".repeat(100_000)), Lang::En);
    }

    #[test]
    fn switch_tags_round_trip() {
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.tag()), Some(lang));
        }
        assert_eq!(Lang::parse("ZH-cn"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("<script>"), None);
    }
}
