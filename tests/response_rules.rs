//! `benches/response-rules.py` in every mode: the origin-server rules of RFC 9110-9112 that the
//! study "Who's Breaking the Rules?" (CISPA, ASIACCS 2024) tests, probed over raw sockets (what
//! must be refused, and what every response must carry, over files, directories, a redirect,
//! a 404 and the demo routes, with ranges, conditionals and `Accept-Encoding`). Needs python3.

mod common;

#[test]
fn the_response_rules_hold_in_every_mode() {
    common::script_passes_in_every_mode("response-rules.py", &[], "0 rules broken");
}
