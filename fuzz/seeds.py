#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/) from the real-SDK signature vectors
(../shared/vectors/signatures.json) and hand-picked edge cases. Re-run after changing an input
layout; file names are stable, so a re-run only shows real changes in git.

    python3 fuzz/seeds.py [path/to/signatures.json]
"""
import hashlib
import json
import os
import sys
import urllib.parse

here = os.path.dirname(os.path.abspath(__file__))
vectors_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    here, "..", "..", "shared", "vectors", "signatures.json")
vectors = json.load(open(vectors_path, encoding="utf-8"))["vectors"]


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def form(params):
    return urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote_plus)


# params: CONTENT-TYPE \n QUERY \n BODY
FORM = "application/x-www-form-urlencoded;charset=UTF-8"
for v in vectors:
    p = dict(v["params"], sign=v["sign"])
    system = {k: p[k] for k in ("method", "app_key", "sign_method", "timestamp", "v", "format", "sign") if k in p}
    business = {k: x for k, x in p.items() if k not in system}
    write("params", f"{v['id']}-body", f"{FORM}\n\n{form(p)}")
    write("params", f"{v['id']}-split", f"{FORM}\n{form(system)}\n{form(business)}")
boundary = "----TopBoundary7MA4YWxkTrZu0gW"
multipart = "".join(
    f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{x}\r\n"
    for k, x in sorted(vectors[0]["params"].items()))
multipart += (f"--{boundary}\r\nContent-Disposition: file; name=\"img\"; filename=\"a.png\"\r\n"
              f"Content-Type: image/png\r\n\r\n\x89PNG\r\n--{boundary}--\r\n")
write("params", "multipart", f"multipart/form-data; boundary={boundary}\nformat=json\n{multipart}")
write("params", "duplicate-across", f"{FORM}\norder_id=1\norder_id=2")
write("params", "duplicate-inside", f"{FORM}\n\na=1&b=2&a=3")
write("params", "gbk-charset", "application/x-www-form-urlencoded; charset=GBK\n\na=%D6%D0")
write("params", "bad-utf8", b"\n\na=%FF%FE&b=\xc3\x28")
write("params", "bad-percent", f"\n\na=%&b=%4&c=%zz&d=+%2B+&&=&e")
write("params", "json-body", "application/json\n\n{\"a\":1}")
write("params", "too-many", f"{FORM}\n\n" + "&".join(f"k{i}=v" for i in range(1001)))

# voucher_infos: FLAGS, TEXT
sdk = [{"confirm_code": "A1B2C3D4", "used_quantity": 1, "used_date": "2024-05-01 12:00:00"}]
write("voucher_infos", "sdk-one", b"\x00" + json.dumps(sdk, separators=(",", ":")).encode())
write("voucher_infos", "sdk-two-legacy", b"\x02" + json.dumps(
    sdk + [{"confirm_code": "E5F6G7H8", "used_quantity": 2}], separators=(",", ":")).encode())
write("voucher_infos", "cumulative-zero", b"\x01" + b'[{"used_quantity":0,"confirm_code":"Z9"}]')
write("voucher_infos", "string-quantity", b"\x00" + b'[{"confirm_code":"C1","used_quantity":"3","used_date":null}]')
write("voucher_infos", "numeric-code", b"\x00" + b'[{"confirm_code":12345678,"used_quantity":1,"extra":[1,{}]}]')
write("voucher_infos", "duplicate-code", b"\x00" + b'[{"confirm_code":"D","used_quantity":1},{"confirm_code":"D","used_quantity":1}]')
write("voucher_infos", "bad-date", b"\x00" + b'[{"confirm_code":"D","used_quantity":1,"used_date":"2024-13-01 25:00:00"}]')
write("voucher_infos", "negative", b"\x00" + b'[{"confirm_code":"D","used_quantity":-1}]')
write("voucher_infos", "huge-number", b"\x00" + b'[{"confirm_code":"D","used_quantity":1e400}]')
write("voucher_infos", "not-a-list", b"\x00" + b'{"confirm_code":"D"}')
write("voucher_infos", "truncated", b"\x00" + b'[{"confirm_code":"D","used_q')
write("voucher_infos", "unicode-code", b"\x00" + '[{"confirm_code":"码\\u0000\\ud83d\\ude00","used_quantity":1}]'.encode())
write("voucher_infos", "issue-extras", b"\x00" + b'[{"confirm_code":"I1","type":1,"quantity":2,"assist_code":"x","url":"http://a/b","img":null}]')
write("voucher_infos", "issue-failed", b"\x04" + b'[]')
write("voucher_infos", "too-many", b"\x00" + ("[" + ",".join(
    f'{{"confirm_code":"C{i}","used_quantity":1}}' for i in range(1000)) + "]").encode())

# sign_verify: METHOD-BYTE, secret \0 sign \0 name \0 value ...
methods = {"md5": 0, "hmac": 1, "hmac-sha256": 2}
for v in vectors:
    fields = [v["secret"], v["sign"]]
    for k, x in sorted(v["params"].items()):
        fields += [k, x]
    write("sign_verify", v["id"], bytes([methods[v["sign_method"]]]) + "\0".join(fields).encode())
write("sign_verify", "empty-values", b"\x00s\0\0a\0\0b\0x\0\0empty-name")
write("sign_verify", "lowercase-hex", b"\x02k\0" + hashlib.md5(b"x").hexdigest().encode() + b"\0a\0b")
write("sign_verify", "non-hex", b"\x01k\0ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\0a\0b")

# envelope: FORMAT-BYTE, CODE (4 bytes LE), msg \0 sub_code \0 sub_msg \0 request_id \0 values
def env(fmt, code, *strings):
    return bytes([fmt]) + code.to_bytes(4, "little") + "\0".join(strings).encode()
write("envelope", "xml-business", env(0, 50, "Remote service error", "isv.voucher-not-exist", "核销码不存在", "109wcmcgllsj1", "ok"))
write("envelope", "json-busy", env(1, 50, "Remote service error", "isp.service-busy", "服务繁忙，请稍后重试", "0000000000001"))
write("envelope", "simplified", env(2, 0, "", "", "", "abc", "describe"))
write("envelope", "escapes", env(3, 41, "<&>\"'\t\r\n", "\x01\x1f\ufffe\uffff", "\\\"\u2028", "]]>&amp;"))
write("envelope", "refund-root", env(4, 7, "App Call Limited", "isv.x", "y", "id", "退票"))
write("envelope", "no-sub", env(5, 29, "Invalid app Key"))
