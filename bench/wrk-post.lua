-- wrk script for bench/run.sh: POSTs one small non-stream chat completion
-- and prints one parseable line at the end. The Authorization header is
-- given on wrk's command line (-H) so that this file holds no key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The prompt's mock script: no pacing of this whole answer (see run.sh).
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello. [mock-script:{\\"chunk_delay_ms\\":0}]"}],"max_tokens":16}'

-- Latency percentiles are in microseconds; errors.status counts HTTP
-- statuses above 399 (wrk's "Non-2xx or 3xx responses").
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT p50_us=%d p99_us=%d p999_us=%d max_us=%d rps=%.1f requests=%d duration_us=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
      summary.requests / (summary.duration / 1e6), summary.requests, summary.duration,
      e.status, e.connect, e.read, e.write, e.timeout))
end
