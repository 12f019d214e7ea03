"""Server rows of docs/BENCHMARKS.md (issue 5), measured side by side in one
run: vitrine-server pinned to core 0, the load generator on core 1,
keep-alive, 32 connections. Imported by scripts/bench.py."""
import json, os, shutil, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
LOADTEST = os.path.join(REL, "vitrine-loadtest")
SERVER = os.path.join(REL, "vitrine-server")
HELLO = os.path.join(REL, "examples", "hello_hyper")
TASKSET = shutil.which("taskset") and (os.cpu_count() or 1) > 1


def pin(core, cmd):
    return (["taskset", "-c", str(core)] if TASKSET else []) + cmd


def log(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)


def gen(path, items, users=10_000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cmd = [LOADTEST, "gen", "--out", path, "--dtype", "int8", "--items", str(items), "--dim", "64", "--users", str(users)]
    log(cmd)
    subprocess.run(cmd, check=True, capture_output=True)


def wait_ready(url, timeout=30.0, path="/readyz"):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url + path, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except Exception:
            time.sleep(0.005)
    raise RuntimeError(f"{url} not ready within {timeout} s")


class Proc:
    def __init__(self, cmd, env=None):
        log(cmd)
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, **(env or {})})
        self.started = time.perf_counter()

    def rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def load(url, ids_from, seconds, rate=None, model="demo", connections=32, svg=None):
    cmd = [LOADTEST, "--url", url, "--ids-from", ids_from, "--model", model, "--connections", str(connections),
           "--duration", f"{seconds}s", "--warmup", "1s", "--json", "--quiet"]
    if rate:
        cmd += ["--rate", str(rate)]
    if svg:
        cmd += ["--svg", svg]
    log(pin(1, cmd))
    out = subprocess.run(pin(1, cmd), check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def kernel_qps(items, seconds):
    cmd = [LOADTEST, "scan", "--items", str(items), "--dim", "64", "--dtype", "int8", "--k", "10", "--batch", "1",
           "--seconds", str(seconds), "--json"]
    log(pin(0, cmd))
    return json.loads(subprocess.run(pin(0, cmd), check=True, capture_output=True, text=True).stdout)["qps"]


def server_section(python, seconds, tmp, verdict):
    rows, notes, cmds = [], [], []
    secs = max(3, int(seconds * 2))
    m100 = os.path.join(tmp, "m100", "demo", "1", "model.vtr")
    m10 = os.path.join(tmp, "m10", "demo", "1", "model.vtr")
    m1m = os.path.join(tmp, "m1m", "demo", "1", "model.vtr")
    gen(m100, 100_000)
    gen(m10, 10_000)
    gen(m1m, 1_000_000)
    url = "http://127.0.0.1:18190"
    cmds.append("vitrine-loadtest gen --out M/demo/1/model.vtr --dtype int8 --dim 64 --users 10000 --items 100000|10000|1000000")

    def vitrine(models, batching=True):
        return Proc(pin(0, [SERVER, "--models", models, "--listen", url[7:]]),
                    {"VITRINE_MICRO_BATCHING": "true" if batching else "false", "VITRINE_LOG_LEVEL": "warn"})

    # 100k × 64 int8: batching on and off; the kernel's single-query rate.
    results = {}
    for batching in (True, False):
        srv = vitrine(os.path.dirname(os.path.dirname(os.path.dirname(m100))), batching)
        wait_ready(url)
        closed = load(url, m100, secs)
        half = closed["throughput"] / 2
        open_half = load(url, m100, secs, rate=round(half))
        # The latency picture in docs/ (vitrine-loadtest --svg), both ways.
        equal = load(url, m100, secs, rate=1400,
                     svg=os.path.join(ROOT, "docs", f"latency-100k-batching-{'on' if batching else 'off'}.svg"))
        results[batching] = (closed, open_half, equal, srv.rss_mb())
        srv.stop()
    cmds.append("taskset -c 0 vitrine-server --models M --listen 127.0.0.1:18190   (VITRINE_MICRO_BATCHING=true|false)")
    cmds.append("taskset -c 1 vitrine-loadtest --url http://127.0.0.1:18190 --ids-from M/demo/1/model.vtr "
                "--connections 32 --duration Ns [--rate R] --json")
    kq = kernel_qps(100_000, min(seconds, 3))
    cmds.append("taskset -c 0 vitrine-loadtest scan --items 100000 --dim 64 --dtype int8 --k 10 --batch 1 --json")

    fast = None
    if python:
        try:
            import importlib.util  # noqa: F401
            p = Proc(pin(0, [python, os.path.join(ROOT, "scripts", "fastapi_baseline.py"), "--items", "100000",
                             "--dim", "64", "--users", "10000", "--port", "18198"]))
            wait_ready("http://127.0.0.1:18198", 60, "/docs")
            fast = load("http://127.0.0.1:18198", m100, secs)
            p.stop()
            cmds.append("taskset -c 0 python scripts/fastapi_baseline.py --items 100000 --dim 64 --port 18198   (uvicorn, one worker)")
        except Exception as e:  # noqa: BLE001
            notes.append(f"FastAPI anchor skipped: {e}")
    closed, open_half, equal, rss = results[True]
    closed_nb, open_half_nb, equal_nb, _ = results[False]
    tp = closed["throughput"]
    if fast:
        ratio = tp / fast["throughput"]
        rows.append(("100k × 64 int8, recommend k=10, 32 conns, closed loop", f"{tp:,.0f} req/s",
                     f"FastAPI + numpy {fast['throughput']:,.0f} req/s", f"{ratio:.1f}×", "≥ 15×", verdict(ratio >= 15)))
    else:
        rows.append(("100k × 64 int8, recommend k=10", f"{tp:,.0f} req/s", "FastAPI skipped (no Python)", "–", "≥ 15×", "–"))
    rows.append(("… against the kernel's single-query scan rate", f"{tp:,.0f} req/s", f"kernel {kq:,.0f} q/s",
                 f"{tp / kq:.0%}", "≥ 70%", verdict(tp / kq >= 0.70)))
    p99 = open_half["latency_us"]["p99"] / 1000
    rows.append((f"p99 at half the maximum rate ({open_half['throughput']:,.0f} req/s, open loop), micro-batching on",
                 f"{p99:.2f} ms", "–", "–", "≤ 1 ms", verdict(p99 <= 1.0)))
    p99nb = open_half_nb["latency_us"]["p99"] / 1000
    rows.append((f"… micro-batching off (its max {closed_nb['throughput']:,.0f} req/s, half {open_half_nb['throughput']:,.0f})",
                 f"{p99nb:.2f} ms", "–", "–", "≤ 1 ms", verdict(p99nb <= 1.0)))
    notes.append(f"Micro-batching (default on): closed-loop maximum {tp:,.0f} req/s on versus {closed_nb['throughput']:,.0f} off "
                 f"({tp / closed_nb['throughput']:.1f}×); at the same offered 1,400 req/s, p99 {equal['latency_us']['p99'] / 1000:.2f} ms "
                 f"on versus {equal_nb['latency_us']['p99'] / 1000:.2f} ms off (p50 {equal['latency_us']['p50'] / 1000:.2f} / "
                 f"{equal_nb['latency_us']['p50'] / 1000:.2f} ms). Batching raises capacity without hurting latency at equal load; "
                 "at half of its own (4× higher) maximum, requests wait for the batch ahead of them.")

    # 10k items against the HTTP ceiling.
    srv = vitrine(os.path.dirname(os.path.dirname(os.path.dirname(m10))))
    wait_ready(url)
    small = load(url, m10, secs)
    srv.stop()
    hello = Proc(pin(0, [HELLO, "127.0.0.1:18199"]))
    wait_ready("http://127.0.0.1:18199", 10, "/")
    ceiling = load("http://127.0.0.1:18199", m10, secs)
    hello.stop()
    cmds.append("taskset -c 0 target/release/examples/hello_hyper 127.0.0.1:18199   (cargo build --release -p vitrine-server --example hello_hyper)")
    r = small["throughput"] / ceiling["throughput"]
    rows.append(("10k × 64 int8, recommend k=10, 32 conns", f"{small['throughput']:,.0f} req/s",
                 f"hyper hello-world {ceiling['throughput']:,.0f} req/s", f"{r:.0%}", "≥ 40%", verdict(r >= 0.40)))

    # Memory and readiness.
    art_mb = os.path.getsize(m100) / 2**20
    rows.append(("RSS after the 100k runs", f"{rss:,.0f} MiB", f"artifact {art_mb:,.0f} MiB (all of it touched: sealed copy)",
                 f"+{rss - art_mb:,.0f} MiB", "≤ touched + 64 MiB", verdict(rss <= art_mb + 64)))
    srv = vitrine(os.path.dirname(os.path.dirname(os.path.dirname(m1m))))
    ready = wait_ready(url)
    rss1m = srv.rss_mb()
    srv.stop()
    size1m = os.path.getsize(m1m) / 2**20
    rows.append(("ready (/readyz 200) after start, 1M × 64 int8", f"{ready * 1000:,.0f} ms", f"artifact {size1m:,.0f} MiB, RSS {rss1m:,.0f} MiB",
                 "–", "≤ 1 s", verdict(ready <= 1.0)))
    notes.append(f"Load generator check: the hello-world server answered {ceiling['throughput']:,.0f} req/s through vitrine-loadtest "
                 f"(p99 {ceiling['latency_us']['p99'] / 1000:.2f} ms); the issue's reference machine measured about 130,000.")
    detail = [
        "| run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in [("100k, batching on, closed", closed), ("100k, batching on, open at half max", open_half),
                      ("100k, batching on, open 1,400 req/s", equal), ("100k, batching off, closed", closed_nb),
                      ("100k, batching off, open at half max", open_half_nb), ("100k, batching off, open 1,400 req/s", equal_nb),
                      ("10k, closed", small), ("hyper hello-world, closed", ceiling)] + ([("FastAPI + numpy 100k, closed", fast)] if fast else []):
        l = res["latency_us"]
        detail.append(f"| {name} | {res['throughput']:,.0f} | {l['p50'] / 1000:.2f} | {l['p90'] / 1000:.2f} | {l['p99'] / 1000:.2f} | "
                      f"{l['p99.9'] / 1000:.2f} | {res['errors']} |")
    return rows, notes, cmds, detail


def promotions_section(seconds, tmp, verdict, n_promotions=50):
    """50 promotions under sustained open-loop load (issue 6): failed
    requests, p99 during the promotion phase against a steady phase, RSS
    after the first and the last promotion, publish-to-promoted times."""
    import threading
    rows, notes, cmds = [], [], []
    models = os.path.join(tmp, "promo")
    shop = os.path.join(models, "shop")
    first = os.path.join(shop, "1", "model.vtr")
    gen(first, 10_000)
    with open(first, "rb") as f:
        artifact = f.read()
    url = "http://127.0.0.1:18191"
    window_ms = 500
    env = {"VITRINE_LOG_LEVEL": "warn", "VITRINE_LIFECYCLE_ONLINE_MAX_DURATION_MS": str(window_ms),
           "VITRINE_LIFECYCLE_ONLINE_MIN_SAMPLES": "100", "VITRINE_LIFECYCLE_DEBOUNCE_MS": "50",
           "VITRINE_LIFECYCLE_KEEP_VERSIONS": "1"}
    srv = Proc(pin(0, [SERVER, "--models", models, "--listen", url[7:]]), env)
    wait_ready(url)
    rate, secs = 2000, max(10, int(seconds * 4))
    steady = load(url, first, secs, rate=rate, model="shop")

    def version():
        # The light listing, polled every 10 ms: the status page carries
        # every version's report and would itself load the server.
        with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
            return json.loads(r.read())["models"][0].get("version")

    times, rss_first = [], None
    result = {}

    def publish_all():
        nonlocal rss_first
        time.sleep(1.5)
        for v in range(2, n_promotions + 2):
            tmpdir = os.path.join(shop, f".tmp-{v}")
            os.makedirs(tmpdir)
            with open(os.path.join(tmpdir, "model.vtr"), "wb") as f:
                f.write(artifact)
            t = time.perf_counter()
            os.rename(tmpdir, os.path.join(shop, str(v)))
            while version() != v:
                time.sleep(0.01)
            times.append(time.perf_counter() - t)
            if v == 2:
                rss_first = srv.rss_mb()
        result["rss_last"] = srv.rss_mb()

    th = threading.Thread(target=publish_all)
    th.start()
    # Long enough for every promotion (each needs about the shadow window).
    during = load(url, first, int(1.5 + n_promotions * (window_ms / 1000 + 0.6)) + 2, rate=rate, model="shop")
    th.join()
    srv.stop()
    cmds.append(f"VITRINE_LIFECYCLE_ONLINE_MAX_DURATION_MS={window_ms} taskset -c 0 vitrine-server --models M --listen 127.0.0.1:18191")
    cmds.append(f"taskset -c 1 vitrine-loadtest --url http://127.0.0.1:18191 --model shop --rate {rate} ... (steady, then during {n_promotions} publishes)")
    failed = during["errors"] + sum(v for k, v in during["status"].items() if k != "200")
    rows.append((f"{n_promotions} promotions under {rate:,} req/s (10k × 64 int8)", f"{failed} failed of {during['requests']:,}",
                 "–", "–", "0 failed", verdict(failed == 0)))
    ratio = during["latency_us"]["p99"] / steady["latency_us"]["p99"]
    rows.append(("p99 during the promotion phase vs steady state", f"{during['latency_us']['p99'] / 1000:.2f} ms",
                 f"steady {steady['latency_us']['p99'] / 1000:.2f} ms", f"{ratio:.2f}×", "≤ 1.25×", verdict(ratio <= 1.25)))
    growth = result["rss_last"] / rss_first
    rows.append((f"RSS after {n_promotions} promotions vs after the first", f"{result['rss_last']:,.0f} MiB", f"{rss_first:,.0f} MiB",
                 f"{growth:.2f}×", "≤ 1.1×", verdict(growth <= 1.1)))
    limit = window_ms / 1000 + 1
    rows.append(("publish → promoted (rename to serving)", f"median {sorted(times)[len(times) // 2]:.2f} s, max {max(times):.2f} s",
                 f"shadow window {window_ms} ms", "–", f"≤ window + 1 s = {limit:.1f} s", verdict(max(times) <= limit)))
    notes.append("keep_versions = 1 here, so the first and the last RSS hold the same number of versions "
                 "(serving + one retained): the ratio shows growth across promotions, not a configured retention. ")
    notes.append("The promotion phase covers all the publishes back to back, so its p99 includes every promotion "
                 "window; each promotion copies and validates the artifact, warms it up, runs the offline gate on "
                 "both holdouts and mirrors 5% of requests for the shadow window, on the same core as the traffic.")
    return rows, notes, cmds


def ranker_section(seconds, tmp, verdict):
    """Re-ranking 200 candidates with the MLP fixture (68 features: 4 scalars
    + 32-dim user and item factors) against the same model without a
    bundle, open loop at a low rate so p50 is the service time."""
    rows, notes, cmds = [], [], []
    fixtures = os.path.join(ROOT, "server", "tests", "data", "ranker")
    results = {}
    for with_ranker in (False, True):
        models = os.path.join(tmp, "rk-on" if with_ranker else "rk-off")
        model = os.path.join(models, "shop", "1", "model.vtr")
        os.makedirs(os.path.dirname(model), exist_ok=True)
        cmd = [LOADTEST, "gen", "--out", model, "--dtype", "int8", "--items", "10000", "--dim", "32", "--users", "10000"]
        log(cmd)
        subprocess.run(cmd, check=True, capture_output=True)
        if with_ranker:
            shutil.copy(os.path.join(fixtures, "mlp.onnx"), os.path.join(os.path.dirname(model), "ranker.onnx"))
            with open(os.path.join(fixtures, "bundle.toml")) as f:
                bundle = f.read().replace("candidates = 50", "candidates = 200")
            with open(os.path.join(os.path.dirname(model), "bundle.toml"), "w") as f:
                f.write(bundle)
        url = "http://127.0.0.1:18192"
        srv = Proc(pin(0, [SERVER, "--models", models, "--listen", url[7:]]), {"VITRINE_LOG_LEVEL": "warn"})
        wait_ready(url)
        results[with_ranker] = load(url, model, max(5, int(seconds * 2)), rate=500, model="shop")
        srv.stop()
    off, on = results[False]["latency_us"]["p50"], results[True]["latency_us"]["p50"]
    rows.append(("re-ranking 200 candidates (tract, MLP 68→16→1), added p50", f"{on - off:,.0f} µs",
                 f"p50 {on:,.0f} µs with, {off:,.0f} µs without", "–", "≤ 100 µs", verdict(on - off <= 100)))
    cmds.append("server/tests/data/ranker/{mlp.onnx,bundle.toml} (candidates = 200) in the version directory; "
                "vitrine-loadtest --rate 500, same model with and without the bundle")
    notes.append(f"p99 with the ranker {results[True]['latency_us']['p99']:,.0f} µs, without {results[False]['latency_us']['p99']:,.0f} µs.")
    return rows, notes, cmds


def wrk_section(seconds, tmp, verdict):
    """Load-generator agreement (issue 8): vitrine-loadtest and wrk, closed
    loop, same endpoint, same request (POST recommend for one user), same
    connection count, both on core 1 against the server on core 0; run
    alternately twice and compared on the mean throughput of each."""
    rows, notes, cmds = [], [], []
    wrk = shutil.which("wrk")
    if not wrk:
        rows.append(("vitrine-loadtest throughput vs wrk, same endpoint", "skipped (wrk not installed: apt install wrk)",
                     "–", "–", "within 10%", "–"))
        return rows, notes, cmds
    models = os.path.join(tmp, "wrk")
    model = os.path.join(models, "demo", "1", "model.vtr")
    gen(model, 10_000)
    users = os.path.join(tmp, "wrk-users.txt")
    with open(users, "w") as f:
        f.write("user-7\n")
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"k":10,"user":"user-7"}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    url = "http://127.0.0.1:18193"
    srv = Proc(pin(0, [SERVER, "--models", models, "--listen", url[7:]]), {"VITRINE_LOG_LEVEL": "warn"})
    wait_ready(url)
    secs = max(3, int(seconds * 2))
    conns = 32
    ours, theirs = [], []
    for _ in range(2):
        cmd = [LOADTEST, "--url", url, "--users", users, "--items", users, "--model", "demo",
               "--connections", str(conns), "--duration", f"{secs}s", "--warmup", "1s", "--json", "--quiet"]
        log(pin(1, cmd))
        res = json.loads(subprocess.run(pin(1, cmd), check=True, capture_output=True, text=True).stdout)
        ours.append(res["throughput"])
        cmd = [wrk, "-t1", f"-c{conns}", f"-d{secs}s", "-s", script, url + "/v1/models/demo/recommend"]
        log(pin(1, cmd))
        out = subprocess.run(pin(1, cmd), check=True, capture_output=True, text=True).stdout
        rate = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec:"))
        bad = [line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
        if bad:
            notes.append("wrk reported: " + "; ".join(bad))
        theirs.append(rate)
    srv.stop()
    a, b = sum(ours) / len(ours), sum(theirs) / len(theirs)
    rows.append((f"vitrine-loadtest vs wrk: closed loop, {conns} connections, same POST recommend",
                 f"{a:,.0f} req/s", f"wrk {b:,.0f} req/s", f"{a / b:.2f}×", "within 10%", verdict(abs(a / b - 1) <= 0.10)))
    notes.append("Runs alternated: vitrine-loadtest " + ", ".join(f"{x:,.0f}" for x in ours) +
                 "; wrk " + ", ".join(f"{x:,.0f}" for x in theirs) + " req/s. Both run every connection on one event-loop thread "
                 "(vitrine-loadtest's closed loop; wrk -t1), on core 1.")
    cmds.append(f"vitrine-loadtest --url URL --users one-user.txt --connections {conns} --duration {secs}s   vs   "
                f"wrk -t1 -c{conns} -d{secs}s -s post.lua URL/v1/models/demo/recommend (alternately, twice)")
    return rows, notes, cmds
