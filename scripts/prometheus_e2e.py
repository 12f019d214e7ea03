#!/usr/bin/env python3
"""Proves the metrics with real parts: a real Prometheus (Debian package)
scrapes a running vitrine-server with configs/prometheus.yml and the alert
rules; vitrine-loadtest drives traffic; a second model version is published
and promoted; then Prometheus's HTTP API must return the latency histogram,
the model-info series of the promoted version, the reload counter, the
fallback counter, healthy rules, and an answer to every query of the Grafana
dashboard. Exit status 0 only if every check passed.

    python3 scripts/prometheus_e2e.py [--bin-dir target/debug]

Needs `prometheus` on PATH; without it, prints SKIPPED and exits 0 unless
--require is given (CI installs it and passes --require)."""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_PORT, PROM_PORT = 18280, 18290
SERVER = f"http://127.0.0.1:{SERVER_PORT}"
PROM = f"http://127.0.0.1:{PROM_PORT}"


def get(url, data=None, timeout=5):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait(what, fn, timeout=60):
    start = time.time()
    last = None
    while time.time() - start < timeout:
        try:
            ok, last = fn()
            if ok:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.5)
    raise SystemExit(f"FAILED: {what} within {timeout} s (last: {last})")


def query(expr):
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    _, body = get(url)
    out = json.loads(body)
    if out["status"] != "success":
        raise SystemExit(f"FAILED: query {expr!r}: {out}")
    return out["data"]["result"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "debug"))
    ap.add_argument("--require", action="store_true")
    a = ap.parse_args()
    prometheus = shutil.which("prometheus")
    if not prometheus:
        print("SKIPPED prometheus_e2e: no prometheus binary (apt install prometheus)")
        sys.exit(1 if a.require else 0)
    server_bin = os.path.join(a.bin_dir, "vitrine-server")
    loadtest_bin = os.path.join(a.bin_dir, "vitrine-loadtest")
    checks = []
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            models = os.path.join(tmp, "models")
            v1 = os.path.join(models, "demo", "1", "model.vtr")
            os.makedirs(os.path.dirname(v1))
            subprocess.run([loadtest_bin, "gen", "--out", v1, "--items", "2000", "--users", "500", "--dim", "16",
                            "--dtype", "int8"], check=True, capture_output=True)
            srv = subprocess.Popen([server_bin, "--models", models, "--listen", f"127.0.0.1:{SERVER_PORT}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "VITRINE_LOG_LEVEL": "warn",
                                        "VITRINE_LIFECYCLE_DEBOUNCE_MS": "50",
                                        "VITRINE_LIFECYCLE_ONLINE_MAX_DURATION_MS": "1000"})
            procs.append(srv)
            wait("vitrine-server ready", lambda: (get(SERVER + "/readyz")[0] == 200, None))

            # The shipped scrape config, pointed at this server, scraping every second.
            with open(os.path.join(ROOT, "configs", "prometheus.yml")) as f:
                cfg = f.read()
            cfg = cfg.replace('"127.0.0.1:8080"', f'"127.0.0.1:{SERVER_PORT}"')
            cfg = re.sub(r"scrape_interval: \d+s", "scrape_interval: 1s", cfg)
            cfg = re.sub(r"evaluation_interval: \d+s", "evaluation_interval: 1s", cfg)
            prom_dir = os.path.join(tmp, "prom")
            os.makedirs(prom_dir)
            with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
                f.write(cfg)
            shutil.copy(os.path.join(ROOT, "configs", "vitrine-alerts.yml"), prom_dir)
            prom = subprocess.Popen([prometheus, f"--config.file={prom_dir}/prometheus.yml",
                                     f"--storage.tsdb.path={prom_dir}/data", f"--web.listen-address=127.0.0.1:{PROM_PORT}"],
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prom.log"), "w"))
            procs.append(prom)
            wait("prometheus ready", lambda: (get(PROM + "/-/ready")[0] == 200, None))

            # Traffic: a mix of every route, then a few unknown users (fallbacks).
            lt = subprocess.run([loadtest_bin, "--url", SERVER, "--ids-from", v1, "--model", "demo",
                                 "--connections", "4", "--duration", "3s", "--warmup", "500ms",
                                 "--mix", "recommend=6,similar=2,score=1,batch=1", "--json", "--quiet"],
                                check=True, capture_output=True, text=True)
            load = json.loads(lt.stdout)
            for i in range(5):
                get(SERVER + "/v1/models/demo/recommend", json.dumps({"user": f"nobody-{i}", "k": 5}).encode())
            # A new version: validated, shadow-evaluated (online mirroring
            # needs traffic: keep sending), promoted.
            v2 = os.path.join(models, "demo", ".2.tmp")
            os.makedirs(v2)
            shutil.copy(v1, os.path.join(v2, "model.vtr"))
            os.rename(v2, os.path.join(models, "demo", "2"))
            subprocess.Popen([loadtest_bin, "--url", SERVER, "--ids-from", v1, "--model", "demo", "--connections", "2",
                              "--duration", "4s", "--warmup", "0s", "--rate", "300", "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait("version 2 serving", lambda: (json.loads(get(SERVER + "/v1/models/demo")[1]).get("version") == 2, None),
                 timeout=30)

            # What Prometheus itself scraped.
            hist = wait("the latency histogram in Prometheus", lambda: (lambda r: (len(r) > 0, r))(query(
                'histogram_quantile(0.99, sum by (le) (rate(vitrine_http_request_duration_seconds_bucket'
                '{route="/v1/models/{model}/recommend"}[1m])))')))
            p99 = float(hist[0]["value"][1])
            checks.append((f"p99 of recommend from Prometheus: {p99 * 1e3:.2f} ms", 0 < p99 < 1.0))
            buckets = query('count(vitrine_http_request_duration_seconds_bucket{route="/v1/models/{model}/recommend"})')
            checks.append((f"recommend histogram has {buckets[0]['value'][1]} buckets (50 µs … 10 s, +Inf)",
                           int(buckets[0]["value"][1]) == 18))
            info = wait("vitrine_model_info of version 2", lambda: (lambda r: (len(r) > 0, r))(query(
                'vitrine_model_info{model="demo", version="2"} == 1')))
            m = info[0]["metric"]
            checks.append((f"model info series: model={m['model']} version={m['version']} kind={m['kind']} dtype={m['dtype']}",
                           m["kind"] == "embedding" and m["dtype"] == "int8"))
            total = wait("request counter", lambda: (lambda r: (len(r) > 0, r))(query(
                'sum(vitrine_http_requests_total{status="200"})')))
            counted = float(total[0]["value"][1])
            checks.append((f"requests counted by Prometheus {counted:.0f} ≥ measured by the load generator {load['requests']}",
                           counted >= load["requests"]))
            reloads = wait("reload counter", lambda: (lambda r: (len(r) > 0, r))(query(
                'vitrine_model_reloads_total{model="demo", outcome="promoted"}')))
            checks.append((f"promotions counted: {reloads[0]['value'][1]}", float(reloads[0]["value"][1]) >= 1))
            fb = wait("fallback counter", lambda: (lambda r: (len(r) > 0, r))(query('sum(vitrine_recommend_fallback_total)')))
            checks.append((f"fallbacks counted: {fb[0]['value'][1]}", float(fb[0]["value"][1]) >= 5))
            _, body = get(PROM + "/api/v1/rules")
            rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
            healthy = [r["name"] for r in rules if r.get("health") == "ok"]
            checks.append((f"alert rules loaded and evaluated: {len(healthy)} of {len(rules)} healthy",
                           len(rules) == 6 and len(healthy) == 6))
            # Every dashboard query parses and runs (Grafana variables
            # replaced by what Grafana would send).
            with open(os.path.join(ROOT, "configs", "grafana", "vitrine-dashboard.json")) as f:
                dash = json.load(f)
            exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
            exprs += [a["expr"] for a in dash["annotations"]["list"]]
            answered = 0
            for e in exprs:
                e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
                query(e)
                answered += 1
            checks.append((f"dashboard queries accepted by Prometheus: {answered} of {len(exprs)}", answered == len(exprs)))
            nonempty = sum(1 for p in dash["panels"][:6] for t in p["targets"]
                           if query(t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")))
            checks.append((f"traffic, latency, error, version and reload panels with data: {nonempty}", nonempty >= 5))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    failed = [c for c in checks if not c[1]]
    for text, ok in checks:
        print(("ok     " if ok else "FAILED ") + text)
    print(f"prometheus_e2e: {len(checks) - len(failed)} of {len(checks)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
