//! The `mock-upstream` binary: the mock of the library (see its crate
//! documentation for the routes, the built-in answers and the script
//! format), on an address of its own. It prints the port it listens on as
//! the first line of stdout.

use std::net::SocketAddr;
use std::process::ExitCode;

use mock_upstream::{Options, Scenario, Script, Usage};

const HELP: &str = "\
mock-upstream: a scriptable OpenAI and Anthropic upstream for tests and benchmarks.

USAGE: mock-upstream [--listen ADDR] [--key KEY] [--record] [--script JSON]
                     [--chunks N] [--delay-ms MS] [--chunk-delay-ms MS]
       mock-upstream --scenario NAME [--listen ADDR] [--key KEY] [--record-file PATH]
                     [--target URL] [--max-responses N]

  --listen ADDR        address to listen on (default 127.0.0.1:9100; port 0: a free one);
                       the port is printed as the first line of stdout
  --key KEY            requests must carry this key (Authorization: Bearer, or x-api-key
                       with anthropic-version); repeat it to accept several; default: no check
  --record             keep a log of the requests (GET /__mock/requests); default: off
  --script JSON        a script for every request, over the built-in answers
  --chunks N           the benchmark's fixed answer: N pieces \"tok\", \" tok\"…, no tool
                       call, usage always 10 input (none cached) + 5 output tokens
  --delay-ms MS        wait this long before every answer's head
  --chunk-delay-ms MS  wait this long before each streamed piece but the first

  --scenario NAME      script whole turns of a real CLI instead (records at GET /__requests):
                       codex-chat (chat completions for Codex through a gateway),
                       codex-responses (the Responses API for Codex alone), claude-code
                       (Messages and chat completions for Claude Code), claude-code-front
                       (a recording proxy to --target)
  --record-file PATH   append the scenario's records to this JSON-lines file
  --target URL         claude-code-front: where to proxy (http:// on the loopback)
  --max-responses N    codex-responses: answer 400 after N requests

Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages,
/v1/messages/count_tokens, /v1/responses; control under /__mock/ (requests, script,
default). The script format is in the crate documentation (crates/mock-upstream).
";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    options: Options,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 9100));
    let mut options = Options::default();
    let mut top = Script::new();
    let mut target: Option<String> = None;
    let mut max_responses: Option<usize> = None;
    let millis = |name: &str, value: &str| -> Result<u64, String> {
        value.parse().map_err(|e| format!("{name} {value}: {e}"))
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--record" => {
                options.record = true;
                continue;
            }
            _ => {}
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value")),
        };
        match name.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?
            }
            "--key" => options.keys.push(value),
            "--scenario" => options.scenario = Some(value.parse()?),
            "--record-file" => options.record_file = Some(value.into()),
            "--target" => target = Some(value),
            "--max-responses" => {
                max_responses = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--max-responses {value}: {e}"))?,
                )
            }
            "--script" => {
                if options.script != Script::new() {
                    return Err("--script is given once".into());
                }
                options.script =
                    Script::from_json_text(&value).map_err(|e| format!("--script: {e}"))?;
            }
            "--chunks" => {
                let chunks: usize = value
                    .parse()
                    .map_err(|e| format!("--chunks {value}: {e}"))?;
                if chunks == 0 {
                    return Err("--chunks must be at least 1".into());
                }
                top = top
                    .text((0..chunks).map(|i| if i == 0 { "tok" } else { " tok" }))
                    .no_tool_call()
                    .usage(Usage {
                        input: Some(10),
                        cached: Some(0),
                        cache_write: Some(0),
                        output: Some(5),
                        ..Usage::default()
                    });
            }
            "--delay-ms" => top = top.head_delay_ms(millis(&name, &value)?),
            "--chunk-delay-ms" => top = top.chunk_delay_ms(millis(&name, &value)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    // The benchmark's options hold whatever the script says.
    options.script.overlay(&top);
    match &mut options.scenario {
        Some(Scenario::Front { target: slot }) => match target.take() {
            Some(t) if mock_upstream::scenario::front::loopback(&t) => *slot = t,
            Some(t) => {
                return Err(format!(
                    "--target {t}: an http:// URL on the loopback interface"
                ))
            }
            None => return Err("--scenario claude-code-front needs --target".into()),
        },
        Some(Scenario::CodexResponses {
            max_responses: slot,
        }) => *slot = max_responses.take(),
        _ => {}
    }
    if target.is_some() {
        return Err("--target goes with --scenario claude-code-front".into());
    }
    if max_responses.is_some() {
        return Err("--max-responses goes with --scenario codex-responses".into());
    }
    Ok(Some(Args { listen, options }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mock-upstream: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The port alone on the first line: what the test harnesses read.
    println!("{}", addr.port());
    eprintln!(
        "mock-upstream listening on http://{addr} (key {}, recording {})",
        if !args.options.keys.is_empty() {
            "checked"
        } else {
            "not checked"
        },
        if args.options.record { "on" } else { "off" },
    );
    if let Err(e) = mock_upstream::serve(listener, args.options).await {
        eprintln!("mock-upstream: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use mock_upstream::render::{Counts, Reported};
    use mock_upstream::Api;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_parse() {
        let a = args(&[]).unwrap().unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(a.options.script, Script::new());
        assert!(!a.options.record && a.options.keys.is_empty());
        let a = args(&[
            "--listen",
            "127.0.0.1:1",
            "--chunks=3",
            "--delay-ms",
            "7",
            "--chunk-delay-ms=5",
            "--record",
            "--key",
            "k",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.listen.port(), 1);
        let s = &a.options.script;
        assert_eq!(s.text.as_deref().unwrap(), ["tok", " tok", " tok"]);
        assert_eq!(s.tool_call, Some(None));
        assert_eq!((s.head_delay_ms, s.chunk_delay_ms), (Some(7), Some(5)));
        // The benchmark's usage, whatever the API: 10 in (none cached), 5 out.
        for api in [Api::OpenAi, Api::Anthropic] {
            let answer = mock_upstream::answer(api, &serde_json::json!({"model": "m"}), s);
            assert_eq!(
                answer.usage,
                Reported::Counts(Counts {
                    input: 10,
                    cached: Some(0),
                    cache_write: 0,
                    output: 5,
                    reasoning: None
                })
            );
        }
        assert!(a.options.record);
        assert_eq!(a.options.keys, ["k"]);
        let a = args(&[
            "--script",
            r#"{"status": 500, "anthropic": {"status": 529}}"#,
            "--delay-ms",
            "1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.options.script.status, Some(500));
        assert_eq!(
            a.options.script.anthropic.as_ref().unwrap().status,
            Some(529)
        );
        assert_eq!(a.options.script.head_delay_ms, Some(1));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--chunks"]).is_err());
        assert!(args(&["--chunks", "0"]).is_err());
        assert!(args(&["--bogus", "1"]).is_err());
        assert!(args(&["--script", "{\"nope\": 1}"]).is_err());
        let a = args(&[
            "--scenario",
            "claude-code-front",
            "--target",
            "http://127.0.0.1:9",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            a.options.scenario,
            Some(Scenario::Front {
                target: "http://127.0.0.1:9".into()
            })
        );
        let a = args(&["--scenario=codex-responses", "--max-responses", "3"])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.options.scenario,
            Some(Scenario::CodexResponses {
                max_responses: Some(3)
            })
        );
        assert!(args(&["--scenario", "claude-code-front"]).is_err());
        assert!(args(&[
            "--scenario",
            "claude-code-front",
            "--target",
            "http://10.1.1.1"
        ])
        .is_err());
        assert!(args(&["--target", "http://127.0.0.1:9"]).is_err());
        assert!(args(&["--scenario", "nope"]).is_err());
    }
}
