//! Reading a gateway answer, without IO (docs/PROTOCOL.md §4.2, §5.3): wrapped JSON, simplified
//! JSON and XML, each either a success or an `error_response`.
//!
//! The body's first byte decides between XML and JSON, not the format that was asked for: a
//! gateway answers a bad `format` in XML, whatever the request said.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};
use top_protocol::envelope::response_root;

use crate::error::{snippet, ApiError, ClientError};

/// The root name of every error, in every format.
const ERROR_ROOT: &str = "error_response";

/// Reads one answer to `method`: the inner response object on success (`request_id`
/// included), [`ClientError::Api`] for an `error_response`, [`ClientError::Decode`] for
/// anything that is not a TOP envelope.
///
/// JSON is accepted wrapped (`{"<root>":{…}}`) or simplified (flat) whatever was asked, so a
/// gateway that ignores `simplify` still works. XML leaves are strings (`<is_success>true
/// </is_success>` reads as `"true"`); the typed calls accept both spellings.
pub(crate) fn parse_response(body: &[u8], method: &str) -> Result<Value, ClientError> {
    let decode = |reason: String| ClientError::Decode {
        reason,
        body: snippet(body),
    };
    let text = std::str::from_utf8(body).map_err(|e| decode(format!("not UTF-8: {e}")))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.starts_with('<') {
        let (root, value) = parse_xml(text).map_err(decode)?;
        if root == ERROR_ROOT {
            return Err(api_error(&value).map_err(decode)?.into());
        }
        return match value {
            Value::Object(_) => Ok(value),
            // `<root/>` or `<root>text</root>`: an empty response object.
            _ => Ok(Value::Object(Map::new())),
        };
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| decode(format!("not JSON or XML: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(decode("the JSON answer is not an object".into()));
    };
    if let Some(error) = map.get(ERROR_ROOT) {
        return Err(api_error(error).map_err(decode)?.into());
    }
    let root = response_root(method);
    if let Some(inner @ Value::Object(_)) = map.remove(&root) {
        return Ok(inner);
    }
    // A single `<something>_response` object: wrapped under another root (a method name the
    // gateway spells differently); anything else is the simplified, flat form.
    let wrapped_elsewhere = map.len() == 1
        && map
            .iter()
            .all(|(key, inner)| key.ends_with("_response") && inner.is_object());
    if wrapped_elsewhere {
        return Ok(map
            .into_iter()
            .map(|(_, inner)| inner)
            .next()
            .unwrap_or_default());
    }
    Ok(Value::Object(map))
}

/// Reads the fields of an `error_response` object (JSON numbers or XML strings alike).
fn api_error(value: &Value) -> Result<ApiError, String> {
    let Value::Object(obj) = value else {
        return Err("error_response is not an object".into());
    };
    let text = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let code = match obj.get("code") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("error_response has no numeric `code`")?;
    Ok(ApiError {
        code,
        msg: text("msg").unwrap_or_default(),
        sub_code: text("sub_code").filter(|s| !s.is_empty()),
        sub_msg: text("sub_msg").filter(|s| !s.is_empty()),
        request_id: text("request_id").filter(|s| !s.is_empty()),
    })
}

/// Reads a boolean field that JSON sends as `true` and XML as the text `true`.
pub(crate) fn bool_field(value: &Value, name: &str) -> Result<bool, ClientError> {
    match value.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        other => Err(ClientError::Decode {
            reason: format!("`{name}` is not a boolean: {other:?}"),
            body: value.to_string(),
        }),
    }
}

/// One element being read: its name, the children seen so far and its text.
struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
}

/// A small XML reader for TOP bodies: returns the root element's name and its content as JSON
/// (an element with child elements is an object, a repeated child an array, any other element
/// its text). Attributes, comments and processing instructions are ignored; the predefined
/// entities, character references and CDATA are decoded.
fn parse_xml(text: &str) -> Result<(String, Value), String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML: {e}"))?;
        match event {
            Event::Start(e) => stack.push(Frame {
                name: name_of(e.name().as_ref())?,
                children: Map::new(),
                text: String::new(),
            }),
            Event::Empty(e) => {
                let name = name_of(e.name().as_ref())?;
                match stack.last_mut() {
                    Some(parent) => add_child(&mut parent.children, name, Value::from("")),
                    None => return Ok((name, Value::from(""))),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(|e| format!("bad text: {e}"))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    let s = c.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    top.text.push(c);
                } else {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    let resolved = resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    top.text.push_str(resolved);
                }
            }
            Event::End(_) => {
                let Some(frame) = stack.pop() else {
                    return Err("unbalanced end tag".into());
                };
                let value = if frame.children.is_empty() {
                    Value::String(frame.text)
                } else {
                    Value::Object(frame.children)
                };
                match stack.last_mut() {
                    Some(parent) => add_child(&mut parent.children, frame.name, value),
                    None => return Ok((frame.name, value)),
                }
            }
            Event::Eof => return Err("the XML document ends before its root element".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

fn name_of(raw: &[u8]) -> Result<String, String> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|e| format!("element name is not UTF-8: {e}"))
}

/// Adds a child value; a name seen twice becomes an array of its values, in order.
fn add_child(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            children.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const VERIFY: &str = "taobao.travel.ticket.order.verify";

    fn err(body: &str) -> ApiError {
        match parse_response(body.as_bytes(), VERIFY) {
            Err(ClientError::Api(e)) => e,
            other => panic!("expected an error_response, got {other:?}"),
        }
    }

    #[test]
    fn all_three_success_envelopes_give_the_inner_object() {
        let wrapped =
            r#"{"travel_ticket_order_verify_response":{"is_success":true,"request_id":"r1"}}"#;
        let flat = r#"{"is_success":true,"request_id":"r1"}"#;
        let xml = r#"<?xml version="1.0" encoding="utf-8" ?><travel_ticket_order_verify_response><is_success>true</is_success><request_id>r1</request_id></travel_ticket_order_verify_response>"#;
        for body in [wrapped, flat] {
            assert_eq!(
                parse_response(body.as_bytes(), VERIFY).unwrap(),
                json!({"is_success": true, "request_id": "r1"})
            );
        }
        let v = parse_response(xml.as_bytes(), VERIFY).unwrap();
        assert_eq!(v, json!({"is_success": "true", "request_id": "r1"}));
        assert!(bool_field(&v, "is_success").unwrap());
    }

    #[test]
    fn errors_keep_every_field_in_json_and_xml() {
        let want = ApiError {
            code: 50,
            msg: "Remote service error".into(),
            sub_code: Some("isv.verify-num-exceed".into()),
            sub_msg: Some("核销数量超过可用数量: <1> & \"2\"".into()),
            request_id: Some("utk0hpy90yyq0".into()),
        };
        assert_eq!(
            err(
                r#"{"error_response":{"code":50,"msg":"Remote service error","sub_code":"isv.verify-num-exceed","sub_msg":"核销数量超过可用数量: <1> & \"2\"","request_id":"utk0hpy90yyq0"}}"#
            ),
            want
        );
        assert_eq!(
            err(
                r#"<?xml version="1.0" encoding="utf-8" ?><error_response><code>50</code><msg>Remote service error</msg><sub_code>isv.verify-num-exceed</sub_code><sub_msg>核销数量超过可用数量: &lt;1&gt; &amp; &quot;2&quot;</sub_msg><request_id>utk0hpy90yyq0</request_id></error_response>"#
            ),
            want
        );
        let bare = err(r#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#);
        assert_eq!(
            (bare.code, bare.sub_code, bare.request_id),
            (25, None, None)
        );
    }

    #[test]
    fn xml_nesting_repeats_and_references() {
        let (root, v) =
            parse_xml("<r><list><i>a&#x41;</i><i><![CDATA[<b>]]></i></list><e/><n>x&#10;y</n></r>")
                .unwrap();
        assert_eq!(root, "r");
        assert_eq!(
            v,
            json!({"list": {"i": ["aA", "<b>"]}, "e": "", "n": "x\ny"})
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for body in ["", "null", "[1]", "<r><x></r>", "<html>", "\u{ff}"] {
            assert!(
                matches!(
                    parse_response(body.as_bytes(), VERIFY),
                    Err(ClientError::Decode { .. })
                ),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse_response(br#"{"error_response":{"msg":"no code"}}"#, VERIFY),
            Err(ClientError::Decode { .. })
        ));
    }

    #[test]
    fn other_methods_unwrap_under_their_own_root() {
        let body = br#"{"alitrip_travel_ticket_order_create_response":{"is_success":true,"request_id":"r"}}"#;
        assert_eq!(
            parse_response(body, "alitrip.travel.ticket.order.create").unwrap()["is_success"],
            json!(true)
        );
    }
}
