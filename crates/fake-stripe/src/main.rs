//! The `fake-stripe` binary: the library's fake (see its crate
//! documentation for the routes) on a port of 127.0.0.1. It prints one line,
//! `listening on http://127.0.0.1:PORT`, and serves until killed.

use std::io::Write;
use std::process::ExitCode;

use fake_stripe::Options;

const HELP: &str = "\
fake-stripe: a fake Stripe API (Checkout, customers, invoices, refunds, webhooks) for tests.

USAGE: fake-stripe [--port N] [--secret-key KEY] [--webhook-secret SECRET] [--webhook-url URL]

  --port N                 port of 127.0.0.1 to listen on (default 0: a free one)
  --secret-key KEY         the API key requests must carry (default sk_test_fake)
  --webhook-secret SECRET  the endpoint secret signing webhooks (default whsec_fake)
  --webhook-url URL        where to POST events (default: none; set it later with
                           POST /_fake/webhooks {\"url\": \"...\"})

It prints `listening on http://127.0.0.1:PORT` on stdout once ready.
";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<(u16, Options)>, String> {
    let mut port = 0;
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{name} needs a value"))?;
        match name.as_str() {
            "--port" => port = value.parse().map_err(|e| format!("--port {value}: {e}"))?,
            "--secret-key" => options.secret_key = value,
            "--webhook-secret" => options.webhook_secret = value,
            "--webhook-url" => options.webhook_url = Some(value),
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    Ok(Some((port, options)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (port, options) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-stripe: {e}");
            return ExitCode::from(2);
        }
    };
    let fake = match fake_stripe::start_on(port, options).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-stripe: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", fake.url);
    let _ = stdout.flush();
    // Serves until killed; `fake` must stay alive (dropping it stops it).
    std::future::pending::<()>().await;
    drop(fake);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn parse(args: &[&str]) -> Result<Option<(u16, fake_stripe::Options)>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        let (port, options) = parse(&[
            "--port",
            "4242",
            "--secret-key=sk_test_x",
            "--webhook-url",
            "http://h/w",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(port, 4242);
        assert_eq!(options.secret_key, "sk_test_x");
        assert_eq!(options.webhook_secret, "whsec_fake");
        assert_eq!(options.webhook_url.as_deref(), Some("http://h/w"));
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
    }
}
