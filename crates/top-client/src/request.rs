//! Building a signed request, without IO (docs/PROTOCOL.md §2, §3).
//!
//! Kept apart from the transport so the exact parameters a call sends — and so its signature —
//! can be computed for a pinned timestamp and checked against the golden vectors.

use secrecy::{ExposeSecret, SecretString};
use top_protocol::sign::sign;
use top_protocol::{EmptyValues, Params, SignMethod};

use crate::error::ClientError;

/// The protocol version every SDK sends (`v`).
const VERSION: &str = "2.0";

/// Parameter names the client sets itself; a business parameter may not reuse one, or it could
/// be signed with one value and read with another.
pub(crate) const SYSTEM_PARAMS: &[&str] = &[
    "method",
    "app_key",
    "sign",
    "sign_method",
    "timestamp",
    "v",
    "format",
    "simplify",
    "session",
    "partner_id",
];

/// The response format to ask for (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Format {
    /// `format=json` (the default): the object wrapped in `<method>_response`, or flat with
    /// [`TopClientBuilder::simplify`](crate::TopClientBuilder::simplify).
    #[default]
    Json,
    /// `format=xml`.
    Xml,
}

impl Format {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }

    /// Reads `json` or `xml` (lower-case, as on the wire).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

/// Everything that goes into the system parameters and the signature.
pub(crate) struct Signer {
    pub(crate) app_key: String,
    pub(crate) secret: SecretString,
    pub(crate) sign_method: SignMethod,
    pub(crate) format: Format,
    pub(crate) simplify: bool,
    pub(crate) session: Option<SecretString>,
    pub(crate) partner_id: Option<String>,
}

impl Signer {
    /// The complete parameter set of one call, `sign` included.
    ///
    /// System parameters first (`method`, `app_key`, `sign_method`, `timestamp`, `v`, `format`,
    /// then `simplify=true` for simplified JSON, `session` and `partner_id` when set), then the
    /// business parameters. Empty business values are left out — neither sent nor signed — as
    /// \[JAVA\] does, because that form verifies on every server (§3.2). A business parameter
    /// named like a system one, or given twice, is refused.
    pub(crate) fn signed_params<'a>(
        &self,
        method: &str,
        business: impl IntoIterator<Item = (&'a str, &'a str)>,
        timestamp: &str,
    ) -> Result<Params, ClientError> {
        if method.is_empty() {
            return Err(ClientError::InvalidRequest(
                "the method name is empty".into(),
            ));
        }
        let mut params = Params::new();
        params.insert("method", method);
        params.insert("app_key", self.app_key.as_str());
        params.insert("sign_method", self.sign_method.as_str());
        params.insert("timestamp", timestamp);
        params.insert("v", VERSION);
        params.insert("format", self.format.as_str());
        if self.simplify && self.format == Format::Json {
            params.insert("simplify", "true");
        }
        if let Some(session) = &self.session {
            params.insert("session", session.expose_secret());
        }
        if let Some(partner_id) = &self.partner_id {
            params.insert("partner_id", partner_id.as_str());
        }
        let mut seen = std::collections::HashSet::new();
        for (name, value) in business {
            if SYSTEM_PARAMS.contains(&name) {
                return Err(ClientError::InvalidRequest(format!(
                    "`{name}` is a system parameter set by the client"
                )));
            }
            if name.is_empty() {
                return Err(ClientError::InvalidRequest(
                    "a parameter has an empty name".into(),
                ));
            }
            if !seen.insert(name) {
                return Err(ClientError::InvalidRequest(format!(
                    "parameter `{name}` is given twice"
                )));
            }
            if !value.is_empty() {
                params.insert(name, value);
            }
        }
        let signature = sign(
            self.sign_method,
            self.secret.expose_secret().as_bytes(),
            &params,
            EmptyValues::Skip,
        );
        params.insert("sign", signature);
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn signer() -> Signer {
        Signer {
            app_key: "12345678".into(),
            secret: SecretString::from("test_secret"),
            sign_method: SignMethod::Md5,
            format: Format::Json,
            simplify: false,
            session: None,
            partner_id: None,
        }
    }

    #[test]
    fn reproduces_golden_vector_gv1() {
        let p = signer()
            .signed_params(
                "taobao.travel.ticket.order.verify",
                [
                    ("order_id", "2983749123412345"),
                    ("confirm_code", "A1B2C3D4"),
                    ("check_num", "1"),
                ],
                "2024-05-01 12:00:00",
            )
            .unwrap();
        assert_eq!(p.get("sign"), Some("BD4A9820B81BCD27A62DE2B7B674A582"));
        assert_eq!(p.get("simplify"), None);
    }

    #[test]
    fn empty_values_are_neither_sent_nor_signed() {
        let s = signer();
        let with_empty = s
            .signed_params("m.x", [("a", "1"), ("b", "")], "2024-05-01 12:00:00")
            .unwrap();
        let without = s
            .signed_params("m.x", [("a", "1")], "2024-05-01 12:00:00")
            .unwrap();
        assert_eq!(with_empty, without);
    }

    #[test]
    fn system_names_and_repeats_are_refused() {
        let s = signer();
        for bad in [
            vec![("timestamp", "x")],
            vec![("sign", "x")],
            vec![("a", "1"), ("a", "2")],
        ] {
            assert!(matches!(
                s.signed_params("m.x", bad, "t"),
                Err(ClientError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn simplify_is_only_sent_with_json() {
        let mut s = signer();
        s.simplify = true;
        assert_eq!(
            s.signed_params("m.x", [], "t").unwrap().get("simplify"),
            Some("true")
        );
        s.format = Format::Xml;
        assert_eq!(
            s.signed_params("m.x", [], "t").unwrap().get("simplify"),
            None
        );
    }
}
