# shellcheck shell=bash
# The report of bench/run.sh (sourced, not run): bench/RESULTS.md and the
# chart of added latency, both made from the lines of $RESULTS.

# Targets measured in the load runs at concurrency C, in the usual order.
targets_at() {
    local t
    for t in $ACTIVE_TARGETS; do
        [[ -n $(vals WRK run target="$t" c="$1") ]] && echo "$t"
    done
}

# runs_ratio KIND FIELD BASE TARGET [filters]: median over runs of
# TARGET's FIELD / BASE's FIELD in the same run.
runs_ratio() {
    local kind=$1 field=$2 base=$3 target=$4
    shift 4
    join <(pairs "$kind" "$field" target="$base" "$@") <(pairs "$kind" "$field" target="$target" "$@") |
        awk '$2 > 0 { printf "%.4f\n", $3 / $2 }' | median 4 # one decimal is too coarse for 0.53
}

# met VALUE OP LIMIT: yes / no / – (not measured)
met() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "" || v == "–" || l == "" || l == "–") { print "–"; exit }
        ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
        print ok ? "**yes**" : "**no**" }'
}

fmt_pct() { awk -v v="$1" 'BEGIN { if (v == "" || v == "–") print "–"; else printf "%.0f %%\n", v * 100 }'; }

write_chart() {
    local png=$1 t c p50 p99 data style=1 p50_plots=() p99_plots=()
    for t in $ACTIVE_TARGETS; do
        [[ $t == direct ]] && continue
        data=$WORK/chart-$t.dat
        : >"$data"
        for c in $CONCURRENCY; do
            p50=$(added WRK p50_us direct "$t" c="$c")
            p99=$(added WRK p99_us direct "$t" c="$c")
            if [[ -n $p50 && -n $p99 ]]; then echo "$c $p50 $p99" >>"$data"; fi
        done
        if [[ -s $data ]]; then
            p50_plots+=("'$data' using 1:(\$2 < 1 ? 1 : \$2) with linespoints linestyle $style title '$t'")
            p99_plots+=("'$data' using 1:(\$3 < 1 ? 1 : \$3) with linespoints linestyle $style title '$t'")
        fi
        style=$((style + 1))
    done
    if ((${#p50_plots[@]} == 0)); then
        log "no data for the chart"
        return 0
    fi
    local joined50 joined99
    joined50=$(printf '%s, ' "${p50_plots[@]}")
    joined99=$(printf '%s, ' "${p99_plots[@]}")
    gnuplot <<EOF >"$WORK/gnuplot.log" 2>&1 || log "gnuplot failed: $(tail -3 "$WORK/gnuplot.log")"
set terminal pngcairo size 1200,520 font ",10"
set output '$png'
set multiplot layout 1,2 title "Added latency (target − direct, median of $RUNS runs; values ≤ 1 µs drawn at 1 µs) — $(date -u +%Y-%m-%d), $HEAD, nproc $(nproc)"
set logscale x 2
set logscale y 10
set format y "%.0s%c"
set xtics (1, 16, 64, 256)
set xrange [0.8:320]
set grid
set key top left
set xlabel "concurrency (connections)"
set ylabel "added latency, µs (log scale)"
set style line 1 lw 2 pt 7 lc rgb '#1f77b4'
set style line 2 lw 2 pt 5 lc rgb '#d62728'
set style line 3 lw 2 pt 9 lc rgb '#ff7f0e'
set style line 4 lw 2 pt 11 lc rgb '#2ca02c'
set style line 5 lw 2 pt 13 lc rgb '#9467bd'
set style line 6 lw 2 pt 15 lc rgb '#8c564b'
set title "added p50"
plot ${joined50%, }
set title "added p99"
plot ${joined99%, }
unset multiplot
EOF
}

write_report() {
    local out=$1 c t
    local CPU_MODEL
    CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    {
        echo "# Tollgate benchmark results"
        echo
        echo "Produced by \`bash bench/run.sh\`; [bench/README.md](README.md) says what each figure means and how to run it."
        echo "**Every figure is the median of $RUNS runs** (each run measures all targets back to back); added latency is the"
        echo "median over runs of (target − direct) at the same percentile and concurrency within one run."
        echo
        echo "- date: ${REPORT_DATE:-$(date -u '+%Y-%m-%d %H:%M:%S UTC')}"
        echo "- commit: \`$HEAD\`$DIRTY"
        echo "- machine: nproc $(nproc), $CPU_MODEL, $(uname -r); load average before the load runs: $LOAD_BEFORE"
        echo "- load tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2) and \`stream-probe\` (crates/mock-upstream), ${PIN[*]:-not pinned}; targets and the mock share the machine's cores"
        echo "- settings: DURATION=$DURATION per load run, RUNS=$RUNS, concurrency $CONCURRENCY, SOAK=$SOAK, streaming $STREAM_CONNECTIONS streams × $CHUNKS chunks every $CHUNK_DELAY_MS ms for $STREAM_DURATION, stall = gap > $STALL_MS ms"
        echo "- request: non-stream \`POST /v1/chat/completions\` \`$CHAT_BODY\`; mock: \`mock-upstream --chunks $CHUNKS --chunk-delay-ms $CHUNK_DELAY_MS --delay-ms $MOCK_DELAY_MS\` (usage always 10 + 5 tokens)"
        echo -n "- targets: direct (the mock)"
        want nginx && echo -n "; nginx $("$NGINX" -v 2>&1 | sed 's|.*nginx/||') ($NGINX_WORKERS workers, keep-alive upstream)"
        want tollgate-sqlite && echo -n "; tollgate-sqlite (auth, billing, usage records, metrics)"
        want tollgate-postgres && echo -n "; tollgate-postgres (the same on PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'))"
        want tollgate-billing-off && echo -n "; tollgate-billing-off (SQLite, \`billing = false\`, at c=$BILLING_OFF_C only)"
        want litellm && echo -n "; litellm $LITELLM_VERSION proxy (1 worker, no database, master key)"
        echo
        echo
        write_targets_table
        echo
        echo "## Latency and throughput (non-stream chat completions)"
        echo
        echo "| concurrency | target | p50 µs | p99 µs | p99.9 µs | req/s | errors (all runs) | CPU µs/req |"
        echo "|---:|---|---:|---:|---:|---:|---:|---:|"
        for c in $CONCURRENCY; do
            for t in $(targets_at "$c"); do
                echo "| $c | $t | $(or_dash "$(med WRK p50_us target="$t" c="$c")") | $(or_dash "$(med WRK p99_us target="$t" c="$c")") | $(or_dash "$(med WRK p999_us target="$t" c="$c")") | $(or_dash "$(med WRK rps target="$t" c="$c")") | $(vals WRK errors target="$t" c="$c" | sum) | $(or_dash "$(med WRK cpu_us_per_req target="$t" c="$c")") |"
            done
        done
        echo
        echo "Errors are non-2xx answers plus socket errors and timeouts (> 5 s). CPU is the target's own (its process tree), per completed request."
        echo
        echo "### Added latency (target − direct)"
        echo
        echo "![added latency by concurrency](added-latency.png)"
        echo
        echo "| concurrency | target | added p50 µs | added p99 µs | added p99.9 µs | req/s vs direct | req/s vs nginx |"
        echo "|---:|---|---:|---:|---:|---:|---:|"
        for c in $CONCURRENCY; do
            for t in $(targets_at "$c"); do
                [[ $t == direct ]] && continue
                local vs_nginx=–
                want nginx && [[ $t != nginx ]] && vs_nginx=$(ratio "$(runs_ratio WRK rps nginx "$t" c="$c")" 1)
                echo "| $c | $t | $(or_dash "$(added WRK p50_us direct "$t" c="$c")") | $(or_dash "$(added WRK p99_us direct "$t" c="$c")") | $(or_dash "$(added WRK p999_us direct "$t" c="$c")") | $(ratio "$(runs_ratio WRK rps direct "$t" c="$c")" 1) | $vs_nginx |"
            done
        done
        echo
        write_stream_section
        echo
        write_memory_section
        echo
        write_billing_section
        echo
        write_startup_section
        echo
        write_accounting_section
        echo
        echo "## Configurations used"
        echo
        if want tollgate-sqlite; then
            echo "Tollgate (tollgate-sqlite; the other instances differ in \`listen\`, \`database_url\` and \`billing\`):"
            echo
            echo '```toml'
            sed "s|$WORK|<tmp>|g" "$WORK/tollgate-sqlite.toml"
            echo '```'
            echo
        fi
        if want nginx; then
            echo "nginx:"
            echo
            echo '```nginx'
            sed "s|$WORK|<tmp>|g" "$WORK/nginx/nginx.conf"
            echo '```'
            echo
        fi
        if want litellm; then
            echo "LiteLLM (\`litellm --config litellm.yaml --host 127.0.0.1 --num_workers 1\`, \`LITELLM_LOCAL_MODEL_COST_MAP=True\`):"
            echo
            echo '```yaml'
            sed "s|$WORK|<tmp>|g" "$WORK/litellm.yaml"
            echo '```'
        fi
    } >"$out"
}

write_targets_table() {
    local tg=tollgate-sqlite
    echo "## Targets"
    echo
    echo "The issue's targets (\"Hot path\"), for $tg (auth, billing, usage records and metrics on), against nginx in the same run. \"–\" = not measured in this run."
    echo
    echo "| target | limit | measured | met? |"
    echo "|---|---|---|---|"
    local v l n api
    v=$(runs_ratio WRK cpu_us_per_req nginx $tg c=64)
    echo "| CPU per request at concurrency 64, ÷ nginx's | ≤ 2.5 × | $(or_dash "$(ratio "$v" 1)") × ($(or_dash "$(med WRK cpu_us_per_req target=$tg c=64)") against $(or_dash "$(med WRK cpu_us_per_req target=nginx c=64)") µs) | $(met "$v" "<=" 2.5) |"
    v=$(runs_ratio WRK rps nginx $tg c=64)
    echo "| req/s at concurrency 64 | ≥ 60 % of nginx's | $(fmt_pct "$v") | $(met "$v" ">=" 0.6) |"
    v=$(added WRK p50_us direct $tg c=1)
    n=$(added WRK p50_us direct nginx c=1)
    l=$(awk -v n="$n" 'BEGIN { if (n != "") printf "%.0f", 2 * n }')
    echo "| added p50 at concurrency 1 | ≤ 2 × nginx's ($(or_dash "$n") µs) | $(or_dash "$v") µs | $(met "$v" "<=" "$l") |"
    for api in openai anthropic; do
        v=$(added STREAM ttft_p50_us direct $tg api=$api)
        n=$(added STREAM ttft_p50_us direct nginx api=$api)
        l=$(awk -v n="$n" 'BEGIN { if (n != "") printf "%.0f", 2 * n }')
        echo "| streaming ($api): added time to first token, p50 | ≤ 2 × nginx's ($(or_dash "$n") µs) | $(or_dash "$v") µs | $(met "$v" "<=" "$l") |"
    done
    v=$(vals STREAM stalls target=$tg | sum)
    [[ -z $(vals STREAM stalls target=$tg) ]] && v=
    echo "| streaming: stalls (gap > $STALL_MS ms; all runs, both APIs) | 0 | $(or_dash "$v") | $(met "$v" "<=" 0) |"
    local co_t co_d
    co_t=$(coalesced_share $tg)
    co_d=$(coalesced_share direct)
    l=$(awk -v d="$co_d" 'BEGIN { if (d == "") print ""; else printf "%.3f", d + 0.01 }')
    echo "| streaming: chunks forwarded as they arrive (content events read together with the previous one) | ≤ direct's share + 1 point ($(fmt_pct "$co_d") + 1) | $(fmt_pct "$co_t") | $(met "$co_t" "<=" "$l") |"
    v=$(vals IDLE rss_kb target=$tg | head -n 1)
    [[ -n $v ]] && v=$(mb "$v")
    echo "| idle RSS (after warm-up) | ≤ 30 MB | $(or_dash "$v") MB | $(met "$v" "<=" 30) |"
    v=$(vals MEM peak_kb target=tollgate-mem | head -n 1)
    [[ -n $v ]] && v=$(mb "$v")
    echo "| RSS with $MEM_STREAMS concurrent open streams (peak; $(or_dash "$(vals MEM max_open target=tollgate-mem)") open at once, $(or_dash "$(vals MEM errors target=tollgate-mem)") errors) | ≤ 150 MB | $(or_dash "$v") MB | $(met "$v" "<=" 150) |"
    v=$(vals SOAK growth_pct target=$tg | head -n 1)
    echo "| soak ($SOAK at c=$SOAK_CONNECTIONS): RSS growth | ≤ 5 % | $(or_dash "$v") % | $(met "$v" "<=" 5) |"
    v=$(runs_ratio WRK rps tollgate-billing-off $tg c=64)
    echo "| billing costs little: req/s with billing / without, c=64 | ≥ 90 % | $(fmt_pct "$v") | $(met "$v" ">=" 0.9) |"
    v=$(vals WRK errors target=$tg | sum)
    local s
    s=$(vals STREAM errors target=$tg | sum)
    [[ -z $(vals WRK errors target=$tg) ]] && v=
    echo "| errors through Tollgate (load runs + streams) | 0 | $(or_dash "$v") + $s | $(met "$((${v:-0} + s))" "<=" 0) |"
}

# coalesced_share TARGET: coalesced content events / all content events, OpenAI streams.
coalesced_share() {
    local co ev
    co=$(vals STREAM coalesced target="$1" api=openai | sum)
    ev=$(vals STREAM content_events target="$1" api=openai | sum)
    [[ -z $(vals STREAM coalesced target="$1" api=openai) ]] && return 0
    ratio "$co" "$ev" 4
}

write_stream_section() {
    local api t
    echo "## Streaming ($CHUNKS chunks, one every $CHUNK_DELAY_MS ms, $STREAM_CONNECTIONS streams in flight)"
    echo
    echo "TTFT = request written → first content chunk read; total = request written → end of the answer. Added = target − direct"
    echo "(median over runs). Stalls and coalesced events are counted over all runs; a stream with the wrong number of content chunks is an error."
    echo
    echo "| API | target | TTFT p50 µs | TTFT p99 µs | added TTFT p50 µs | added TTFT p99 µs | total p50 ms | total p99 ms | added total p50 µs | stalls | longest gap ms | coalesced | streams | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for api in openai anthropic; do
        for t in $ACTIVE_TARGETS; do
            [[ -z $(vals STREAM run target="$t" api="$api") ]] && continue
            local add50=– add99=– addtot=–
            if [[ $t != direct ]]; then
                add50=$(or_dash "$(added STREAM ttft_p50_us direct "$t" api="$api")")
                add99=$(or_dash "$(added STREAM ttft_p99_us direct "$t" api="$api")")
                addtot=$(or_dash "$(added STREAM total_p50_us direct "$t" api="$api")")
            fi
            local co ev
            co=$(vals STREAM coalesced target="$t" api="$api" | sum)
            ev=$(vals STREAM content_events target="$t" api="$api" | sum)
            echo "| $api | $t | $(med STREAM ttft_p50_us target="$t" api="$api") | $(med STREAM ttft_p99_us target="$t" api="$api") | $add50 | $add99 | $(awk -v u="$(med STREAM total_p50_us target="$t" api="$api")" 'BEGIN{printf "%.1f", u/1000}') | $(awk -v u="$(med STREAM total_p99_us target="$t" api="$api")" 'BEGIN{printf "%.1f", u/1000}') | $addtot | $(vals STREAM stalls target="$t" api="$api" | sum) | $(awk -v u="$(vals STREAM max_gap_us target="$t" api="$api" | max)" 'BEGIN{printf "%.1f", u/1000}') | $co of $ev ($(fmt_pct "$(ratio "$co" "$ev" 4)")) | $(vals STREAM ok target="$t" api="$api" | sum) | $(vals STREAM errors target="$t" api="$api" | sum) |"
        done
    done
}

write_memory_section() {
    local t
    echo "## Memory"
    echo
    echo "RSS in MB (10⁶ bytes), of the target's whole process tree (nginx: master + workers)."
    echo
    echo "| target | idle after warm-up | after the load runs | peak (VmHWM) over the load runs |"
    echo "|---|---:|---:|---:|"
    for t in $ACTIVE_TARGETS; do
        [[ -z $(vals IDLE rss_kb target="$t") ]] && continue
        echo "| $t | $(mb "$(vals IDLE rss_kb target="$t")") | $(mb "$(or_dash "$(vals PEAK rss_kb target="$t")")") | $(mb "$(or_dash "$(vals PEAK hwm_kb target="$t")")") |"
    done
    if [[ -n $(vals MEM run target=tollgate-mem) ]]; then
        echo
        echo "**$MEM_STREAMS concurrent open streams** through a fresh Tollgate (SQLite, billing on; a mock sending $CHUNKS chunks every $MEM_CHUNK_DELAY_MS ms, so each stream stays open ≈ $(((CHUNKS - 1) * MEM_CHUNK_DELAY_MS / 1000)) s):"
        echo
        echo "| figure | tollgate | direct (the same probe straight to the mock) |"
        echo "|---|---:|---:|"
        local d=target=direct g=target=tollgate-mem
        echo "| idle RSS after warm-up (before the streams) | $(mb "$(vals MEM idle_kb $g)") MB | |"
        echo "| streams open at once (most, seen by the probe) | $(vals MEM max_open $g) of $MEM_STREAMS | $(or_dash "$(vals MEM max_open $d)") |"
        echo "| **peak RSS while they are open** (sampled every 0.2 s) | $(mb "$(vals MEM peak_kb $g)") MB | mock: $(mb "$(vals MEM peak_kb $d)") MB |"
        echo "| VmHWM after the streams | $(mb "$(vals MEM hwm_kb $g)") MB | |"
        echo "| RSS 5 s after the last stream ended | $(mb "$(vals MEM after_kb $g)") MB | |"
        echo "| streams completed / errors | $(vals MEM ok $g) / $(vals MEM errors $g) | $(or_dash "$(vals MEM ok $d)") / $(or_dash "$(vals MEM errors $d)") |"
        echo "| stalls (gap > $((MEM_CHUNK_DELAY_MS + 50)) ms) / longest gap | $(vals MEM stalls $g) / $(awk -v u="$(vals MEM max_gap_us $g)" 'BEGIN{printf "%.0f", u/1000}') ms | $(or_dash "$(vals MEM stalls $d)") / $(awk -v u="$(vals MEM max_gap_us $d)" 'BEGIN{printf "%.0f", u/1000}') ms |"
        echo "| TTFT p50 / p99 (all opened at once) | $(vals MEM ttft_p50_us $g) / $(vals MEM ttft_p99_us $g) µs | $(or_dash "$(vals MEM ttft_p50_us $d)") / $(or_dash "$(vals MEM ttft_p99_us $d)") µs |"
    fi
    if [[ -n $(vals SOAK run target=tollgate-sqlite) ]]; then
        echo
        echo "**Soak**: $SOAK of wrk at c=$SOAK_CONNECTIONS through tollgate-sqlite (after the load runs), RSS sampled every 10 s (\`bench/out/soak-rss.tsv\`):"
        echo
        echo "| figure | value |"
        echo "|---|---:|"
        echo "| RSS before the soak | $(mb "$(vals SOAK rss_before_kb)") MB |"
        echo "| RSS at start (first sample, 10 s in) | $(mb "$(vals SOAK rss_start_kb)") MB |"
        echo "| RSS at the end | $(mb "$(vals SOAK rss_end_kb)") MB |"
        echo "| highest sample | $(mb "$(vals SOAK rss_max_kb)") MB |"
        echo "| **growth** (end − start) / start | $(vals SOAK growth_pct) % |"
        echo "| requests / req/s / errors / p99 µs | $(vals SOAK requests) / $(vals SOAK rps) / $(vals SOAK errors) / $(vals SOAK p99_us) |"
    fi
}

write_billing_section() {
    want tollgate-billing-off || return 0
    local c=$BILLING_OFF_C
    echo "## What billing costs (c=$c)"
    echo
    echo "The same build and configuration with \`billing = false\` (no holds, charges or usage records; a switch for this measurement only)."
    echo
    echo "| target | p50 µs | p99 µs | req/s | CPU µs/req |"
    echo "|---|---:|---:|---:|---:|"
    local t
    for t in tollgate-sqlite tollgate-billing-off; do
        echo "| $t | $(or_dash "$(med WRK p50_us target=$t c="$c")") | $(or_dash "$(med WRK p99_us target=$t c="$c")") | $(or_dash "$(med WRK rps target=$t c="$c")") | $(or_dash "$(med WRK cpu_us_per_req target=$t c="$c")") |"
    done
    echo
    echo "req/s with billing / without: **$(fmt_pct "$(runs_ratio WRK rps tollgate-billing-off tollgate-sqlite c="$c")")** (median of the per-run ratios)."
}

write_startup_section() {
    local t
    [[ -z $(vals STARTUP target) ]] && return 0
    echo "## Start-up (Tollgate)"
    echo
    echo "| instance | first start, fresh database: spawn → \`/healthz\` 200 | restart: spawn → first chat completion 200 | RSS after that request |"
    echo "|---|---:|---:|---:|"
    for t in $(vals STARTUP target); do
        echo "| $t | $(awk -v n="$(vals STARTUP cold_ns target="$t")" 'BEGIN{printf "%.1f", n/1e6}') ms | $(awk -v n="$(vals STARTUP first_ns target="$t")" 'BEGIN{printf "%.1f", n/1e6}') ms | $(mb "$(vals STARTUP rss_first_kb target="$t")") MB |"
    done
}

write_accounting_section() {
    local t
    [[ -z $(vals ACCOUNT target) ]] && return 0
    echo "## Accounting check (billing on)"
    echo
    echo "Every answer costs exactly \$0.000075 (10 prompt × 2.5 + 5 completion × 10 USD per 1M tokens). Settled = the key's \`used_times\`;"
    echo "charged = money spent ÷ that cost. The clients' count misses the requests in flight when a wrk run stopped (the gateway still settles"
    echo "them), so settled may exceed it by at most the sum of the connections of all runs."
    echo
    echo "| instance | completed by clients | settled | charged (remainder) | still held | in-flight allowance | verdict | log: WARN/ERROR, settlement failed |"
    echo "|---|---:|---:|---:|---:|---:|---|---:|"
    for t in $(vals ACCOUNT target); do
        echo "| $t | $(vals ACCOUNT client target="$t") (non-2xx $(vals ACCOUNT non2xx target="$t")) | $(vals ACCOUNT settled target="$t") | $(vals ACCOUNT charged target="$t") ($(vals ACCOUNT remainder target="$t") nano-USD) | $(vals ACCOUNT held target="$t") | ≤ $(vals ACCOUNT inflight target="$t") | $(vals ACCOUNT verdict target="$t") | $(vals ACCOUNT log_warn target="$t"), $(vals ACCOUNT log_settle target="$t") |"
    done
}
