#!/usr/bin/env python3
"""Records what the real Codex CLI sends to a Responses API server and saves
it as fixtures (no Tollgate involved):

    python3 e2e/codex/record_fixtures.py [--out e2e/codex/fixtures]

Runs `codex exec` (CODEX_BIN, or what install.sh installed) twice against
the mock upstream's codex-responses scenario (`mock-upstream --scenario
codex-responses`: MOCK_UPSTREAM_BIN, or the one next to TOLLGATE_BIN's
tollgate), which answers the first request with a function_call to Codex's
shell tool and the second with text:

* model `gpt-test` (unknown to Codex: fallback model metadata), the model
  name the e2e suite uses: request_turn1.json, request_turn2.json;
* model `gpt-5.5` (in Codex's bundled catalog: the tools and parameters a
  real OpenAI model name gets): request_turn1_gpt-5.5.json,
  request_turn2_gpt-5.5.json;
* model `gpt-test` with `model_auto_compact_token_limit = 50`, so that
  Codex compacts after the tool call: request_compaction.json (the mock
  stops answering after 3 requests, as the stateless script would otherwise
  loop; that run ends with an error by design).

Each fixture is {"codex_version", "method", "path", "headers", "body"};
the temporary folder is replaced by /tmp/codex-e2e, the key by
sk-tollgate-user-key. Prints a one-line summary per request.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import codex_cli  # noqa: E402
import mockbin  # noqa: E402

KEY = "sk-tollgate-user-key"
MODELS = {"gpt-test": "", "gpt-5.5": "_gpt-5.5"}


def start_mock(tmp, record, *args):
    try:
        return mockbin.start(
            tmp / "mock.stderr.log",
            ["--scenario", "codex-responses", "--record-file", str(record), *args],
        )
    except RuntimeError as e:
        sys.exit(f"the recording mock did not start: {e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "fixtures"))
    args = parser.parse_args()
    codex = codex_cli.find_codex()
    if not codex:
        sys.exit("no codex CLI: run `bash e2e/codex/install.sh` or set CODEX_BIN")
    version = codex_cli.version(codex)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="codex-rec-") as tmp_name:
        tmp = Path(tmp_name)
        for model, suffix in MODELS.items():
            record = tmp / f"{model}.jsonl"
            proc, port = start_mock(tmp, record)
            try:
                run = codex_cli.run_codex(
                    codex,
                    tmp / f"run-{model}",
                    f"http://127.0.0.1:{port}/v1",
                    model,
                    KEY,
                    codex_cli.PROMPT.format(marker="fixture"),
                )
            finally:
                proc.terminate()
                proc.wait(timeout=15)
            if run.returncode != 0:
                sys.exit(f"codex failed for {model}:\n{run.describe()}")
            records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
            for r in records:
                print(f"{model}: {r['method']} {r['path']} -> {r['status']} {r['reply']}")
            turns = [r for r in records if r["path"].startswith("/v1/responses")]
            for n, r in enumerate(turns[:2], start=1):
                fixture = {
                    "codex_version": version,
                    "method": r["method"],
                    "path": r["path"],
                    "headers": r["headers"],
                    "body": r["body"],
                }
                text = json.dumps(fixture, indent=2, ensure_ascii=False)
                text = text.replace(str(tmp / f"run-{model}"), "/tmp/codex-e2e").replace(str(tmp), "/tmp/codex-e2e")
                (out / f"request_turn{n}{suffix}.json").write_text(text + "\n")
        record = tmp / "compaction.jsonl"
        proc, port = start_mock(tmp, record, "--max-responses", "3")
        try:
            codex_cli.run_codex(
                codex,
                tmp / "run-compaction",
                f"http://127.0.0.1:{port}/v1",
                "gpt-test",
                KEY,
                codex_cli.PROMPT.format(marker="fixture"),
                extra_config="model_auto_compact_token_limit = 50",
            )
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
        for r in records:
            print(f"compaction: {r['method']} {r['path']} -> {r['status']} {r['reply']}")
        compaction = [
            r for r in records
            if json.loads(r["headers"].get("x-codex-turn-metadata", "{}")).get("request_kind") == "compaction"
        ]
        if not compaction:
            sys.exit("codex sent no compaction request")
        r = compaction[0]
        fixture = {"codex_version": version, "method": r["method"], "path": r["path"], "headers": r["headers"],
                   "body": r["body"]}
        text = json.dumps(fixture, indent=2, ensure_ascii=False)
        text = text.replace(str(tmp / "run-compaction"), "/tmp/codex-e2e").replace(str(tmp), "/tmp/codex-e2e")
        (out / "request_compaction.json").write_text(text + "\n")
    print(f"fixtures written to {out} ({version})")


if __name__ == "__main__":
    main()
