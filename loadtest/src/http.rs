//! The HTTP load generator: N keep-alive HTTP/1.1 connections, each sending
//! one request at a time.
//!
//! - Closed loop (no `--rate`): every connection sends its next request as
//!   soon as the previous answer arrives; latency = answer − send.
//! - Open loop (`--rate R`): request j of a connection is *due* at
//!   start + j·N/R (connections staggered); latency is measured from the due
//!   time, not the send time, so a slow server's queueing shows up in the
//!   percentiles instead of silently lowering the offered load
//!   (coordinated-omission correction, as wrk2 does).
//!
//! Requests follow a mix of recommend / similar / score / batch; user and
//! item ids come from an artifact (`--ids-from`) or files, drawn uniformly
//! or Zipf-skewed (`--zipf S`: the i-th most frequent id drawn with
//! probability ∝ 1/i^S, like real shoppers and bestsellers).

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vitrine_core::synthetic::SplitMix64;

#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080 (HTTP/1.1, keep-alive).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// HTTP/2 (cleartext, prior knowledge, as vitrine-server speaks it):
    /// the --connections become concurrent streams on one HTTP/2
    /// connection. Closed loop only.
    #[arg(long)]
    pub http2: bool,
    /// Open loop at this many requests per second (all connections together);
    /// without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured duration, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured run-in before the measured part.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Model name in the request paths.
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// Request mix as weights, e.g. recommend=8,similar=1,score=1,batch=0.
    #[arg(long, default_value = "recommend=1")]
    pub mix: String,
    /// Take user and item ids from this artifact.
    #[arg(long)]
    pub ids_from: Option<PathBuf>,
    /// User ids, one per line (instead of --ids-from).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Item ids, one per line (instead of --ids-from).
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Zipf exponent for id popularity (0 = uniform).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// k in recommend and similar requests.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Requests per recommend:batch call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// One JSON object on stdout instead of the table (progress still on stderr).
    #[arg(long)]
    pub json: bool,
    /// No live progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Write a latency percentile plot (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Recommend,
    Similar,
    Score,
    Batch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Recommend => "recommend",
            Kind::Similar => "similar",
            Kind::Score => "score",
            Kind::Batch => "batch",
        }
    }
}

fn parse_mix(s: &str) -> Result<Vec<(Kind, f64)>> {
    let mut mix = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, w) = part.split_once('=').unwrap_or((part, "1"));
        let kind = match name.trim() {
            "recommend" => Kind::Recommend,
            "similar" => Kind::Similar,
            "score" => Kind::Score,
            "batch" => Kind::Batch,
            other => {
                bail!("--mix: unknown request kind {other:?} (recommend, similar, score, batch)")
            }
        };
        let w: f64 = w
            .trim()
            .parse()
            .with_context(|| format!("--mix: weight of {name}"))?;
        if w > 0.0 {
            mix.push((kind, w));
        }
    }
    if mix.is_empty() {
        bail!("--mix has no positive weight");
    }
    Ok(mix)
}

/// Draws indices 0..n uniformly or Zipf(s) by inverse CDF.
struct Sampler {
    cdf: Option<Vec<f64>>,
    n: usize,
}

impl Sampler {
    fn new(n: usize, s: f64) -> Self {
        if s <= 0.0 {
            return Self { cdf: None, n };
        }
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|i| {
                acc += 1.0 / (i as f64).powf(s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Self { cdf: Some(cdf), n }
    }
    fn draw(&self, rng: &mut SplitMix64) -> usize {
        match &self.cdf {
            None => rng.below(self.n),
            Some(cdf) => {
                let u = f64::from(rng.next_f32());
                cdf.partition_point(|&c| c < u).min(self.n - 1)
            }
        }
    }
}

/// Pre-built request bytes, drawn from per connection.
struct Workload {
    host: String,
    model: String,
    users: Vec<String>,
    items: Vec<String>,
    user_sampler: Sampler,
    item_sampler: Sampler,
    mix: Vec<(Kind, f64)>,
    k: usize,
    batch_size: usize,
}

impl Workload {
    /// One HTTP/1.1 request, ready to write.
    fn request(&self, rng: &mut SplitMix64) -> (Kind, Vec<u8>) {
        let (kind, path, body) = self.request_parts(rng);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        (kind, req.into_bytes())
    }

    /// The next request of the mix: kind, path and JSON body.
    fn request_parts(&self, rng: &mut SplitMix64) -> (Kind, String, String) {
        let total: f64 = self.mix.iter().map(|m| m.1).sum();
        let mut x = f64::from(rng.next_f32()) * total;
        let mut kind = self.mix[0].0;
        for &(k, w) in &self.mix {
            if x < w {
                kind = k;
                break;
            }
            x -= w;
        }
        let user = |rng: &mut SplitMix64| self.users[self.user_sampler.draw(rng)].clone();
        let item = |rng: &mut SplitMix64| self.items[self.item_sampler.draw(rng)].clone();
        let (path, body) = match kind {
            Kind::Recommend => ("recommend", json!({"user": user(rng), "k": self.k})),
            Kind::Similar => ("similar", json!({"item": item(rng), "k": self.k})),
            Kind::Score => (
                "score",
                json!({"user": user(rng), "items": (0..10).map(|_| item(rng)).collect::<Vec<_>>()}),
            ),
            Kind::Batch => (
                "recommend:batch",
                json!({"requests": (0..self.batch_size).map(|_| json!({"user": user(rng), "k": self.k})).collect::<Vec<_>>()}),
            ),
        };
        (
            kind,
            format!("/v1/models/{}/{path}", self.model),
            body.to_string(),
        )
    }
}

/// What one connection measured.
struct ConnStats {
    latency: Histogram<u64>,
    by_kind: BTreeMap<Kind, u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

impl ConnStats {
    fn new() -> Result<Self> {
        Ok(Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            by_kind: BTreeMap::new(),
            statuses: BTreeMap::new(),
            errors: 0,
        })
    }

    /// Counts one exchange if it was due inside the measured window (a
    /// status and its latency, or an error); returns whether the connection
    /// can be kept.
    fn exchange<E>(
        &mut self,
        measured: bool,
        kind: Kind,
        result: Result<(u16, bool), E>,
        latency: Duration,
    ) -> bool {
        match result {
            Ok((status, keep)) => {
                if measured {
                    self.record(kind, status, latency);
                }
                keep
            }
            Err(_) => {
                if measured {
                    self.errors += 1;
                }
                false
            }
        }
    }

    fn record(&mut self, kind: Kind, status: u16, latency: Duration) {
        self.latency
            .saturating_record(latency.as_micros().max(1) as u64);
        *self.by_kind.entry(kind).or_default() += 1;
        *self.statuses.entry(status).or_default() += 1;
    }
}

fn ids_of(args: &HttpArgs) -> Result<(Vec<String>, Vec<String>)> {
    if let Some(path) = &args.ids_from {
        let art =
            vitrine_core::Artifact::open(path).with_context(|| format!("{}", path.display()))?;
        let users = art
            .user_ids()
            .map(|t| t.iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let items = art.item_ids().iter().map(str::to_owned).collect();
        return Ok((users, items));
    }
    let read = |p: &Option<PathBuf>, what: &str| -> Result<Vec<String>> {
        match p {
            Some(p) => Ok(std::fs::read_to_string(p)
                .with_context(|| format!("{}", p.display()))?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            None => {
                bail!("give --ids-from ARTIFACT or --users and --items files (need {what} ids)")
            }
        }
    };
    Ok((read(&args.users, "user")?, read(&args.items, "item")?))
}

pub fn run(args: &HttpArgs) -> Result<()> {
    let url = args.url.as_deref().context("--url is required")?;
    let hostport = url
        .strip_prefix("http://")
        .context("--url: only http:// is supported")?
        .trim_end_matches('/')
        .to_string();
    if args.connections == 0 {
        bail!("--connections must be positive");
    }
    if args.http2 && args.rate.is_some() {
        bail!("--http2 runs the closed loop only (no --rate)");
    }
    let (users, items) = ids_of(args)?;
    if users.is_empty() || items.is_empty() {
        bail!("need at least one user id and one item id");
    }
    let workload = Arc::new(Workload {
        host: hostport.clone(),
        model: args.model.clone(),
        user_sampler: Sampler::new(users.len(), args.zipf),
        item_sampler: Sampler::new(items.len(), args.zipf),
        users,
        items,
        mix: parse_mix(&args.mix)?,
        k: args.k,
        batch_size: args.batch_size.max(1),
    });
    let report = drive(args, &hostport, workload)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, latency_svg(&report))
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

/// Closed loop: every connection on one event-loop thread
/// ([`closed_loop`]), as wrk does. Open loop: one OS thread per connection
/// with blocking sockets, because `thread::sleep` has microsecond-scale
/// precision (timer slack ≈ 50 µs) where an async runtime's timer wheel
/// rounds to whole milliseconds — which would be counted as server latency.
fn drive(args: &HttpArgs, hostport: &str, workload: Arc<Workload>) -> Result<serde_json::Value> {
    use std::net::ToSocketAddrs;
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .context("no address")?;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let progress = {
        let (done, completed, quiet) = (done.clone(), completed.clone(), args.quiet);
        std::thread::spawn(move || {
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = completed.load(Ordering::Relaxed);
                if !quiet && !done.load(Ordering::Relaxed) {
                    eprintln!("  {:>8} req/s", now - last);
                }
                last = now;
            }
        })
    };
    let all: Vec<ConnStats> = if args.rate.is_none() {
        let plan = Plan {
            start,
            stagger: Duration::ZERO,
            interval: None,
            measure_from,
            end,
        };
        if args.http2 {
            closed_loop::drive_h2(
                addr,
                workload,
                args.connections,
                plan,
                args.seed,
                completed.clone(),
            )?
        } else {
            closed_loop::drive(
                addr,
                workload,
                args.connections,
                plan,
                args.seed,
                completed.clone(),
            )?
        }
    } else {
        let mut threads = Vec::new();
        for c in 0..args.connections {
            let w = workload.clone();
            let completed = completed.clone();
            let interval = args
                .rate
                .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
            let stagger = interval.map(|i| i.mul_f64(c as f64 / args.connections as f64));
            let seed = args.seed.wrapping_add(c as u64 * 0x9E37_79B9);
            let plan = Plan {
                start,
                stagger: stagger.unwrap_or_default(),
                interval,
                measure_from,
                end,
            };
            threads.push(std::thread::spawn(move || {
                connection(addr, &w, plan, seed, &completed)
            }));
        }
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a connection thread panicked"))?
            })
            .collect::<Result<_>>()?
    };
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut by_kind: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0;
    for s in all {
        total.add(&s.latency)?;
        for (k, v) in s.by_kind {
            *by_kind.entry(k).or_default() += v;
        }
        for (k, v) in s.statuses {
            *statuses.entry(k).or_default() += v;
        }
        errors += s.errors;
    }
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let measured = total.len();
    let secs = args.duration.as_secs_f64();
    let us = |q: f64| total.value_at_quantile(q) as f64;
    Ok(json!({
        "url": args.url, "connections": args.connections, "rate": args.rate,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "protocol": if args.http2 { "h2" } else { "http/1.1" },
        "duration_s": secs, "warmup_s": args.warmup.as_secs_f64(),
        "requests": measured, "throughput": measured as f64 / secs,
        "latency_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p99.9": us(0.999),
                        "max": total.max() as f64, "mean": total.mean()},
        "percentiles": (0..=60).map(|i| {
            // 0, 50, 75, 87.5, … percent: log-spaced toward the tail.
            let q = 1.0 - 0.5f64.powf(f64::from(i) / 4.0);
            json!([q, total.value_at_quantile(q)])
        }).collect::<Vec<_>>(),
        "by_kind": by_kind.iter().map(|(k, v)| (k.name(), *v)).collect::<BTreeMap<_, _>>(),
        "status": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": errors,
    }))
}

/// When a connection sends: closed loop (`interval` None) or every
/// `interval` from `start + stagger`.
#[derive(Clone, Copy)]
struct Plan {
    start: Instant,
    stagger: Duration,
    interval: Option<Duration>,
    measure_from: Instant,
    end: Instant,
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn connection(
    addr: std::net::SocketAddr,
    w: &Workload,
    plan: Plan,
    seed: u64,
    completed: &AtomicU64,
) -> Result<ConnStats> {
    let mut stats = ConnStats::new()?;
    let mut rng = SplitMix64::new(seed);
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    sleep_until(plan.start + plan.stagger);
    loop {
        let due = match plan.interval {
            Some(i) => plan.start + plan.stagger + i.mul_f64(sent as f64),
            None => Instant::now(),
        };
        if due >= plan.end {
            break;
        }
        sleep_until(due);
        let (kind, req) = w.request(&mut rng);
        sent += 1;
        if stream.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    stream = Some(s);
                }
                Err(_) => {
                    if due >= plan.measure_from {
                        stats.errors += 1;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        let result = s.write_all(&req).and_then(|()| read_response(s, &mut buf));
        let latency = due.elapsed();
        if !stats.exchange(due >= plan.measure_from, kind, result, latency) {
            stream = None;
        }
        completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(stats)
}

/// A complete response head: where the body starts, the status, the body
/// length and whether the connection stays open.
struct Head {
    end: usize,
    status: u16,
    body: usize,
    keep: bool,
}

fn bad(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

/// Parses the response head in `buf` (`Ok(None)`: not complete yet).
/// Bodies must have a Content-Length (what vitrine-server sends).
fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let end = p + 4;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("header not UTF-8"))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut content_length = None;
    let mut keep = true;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                keep = false;
            }
        }
    }
    let body = content_length
        .ok_or_else(|| bad("no Content-Length (chunked responses are not supported)"))?;
    Ok(Some(Head {
        end,
        status,
        body,
        keep,
    }))
}

/// Reads one response; returns its status and whether the connection stays
/// open.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let mut len = 0;
    let head = loop {
        if let Some(h) = parse_head(&buf[..len])? {
            break h;
        }
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        len += n;
    };
    let mut have = len - head.end;
    while have < head.body {
        if buf.len() < head.end + head.body {
            buf.resize(head.end + head.body, 0);
        }
        let n = s.read(&mut buf[head.end + have..head.end + head.body])?;
        if n == 0 {
            return Err(bad("connection closed mid-body"));
        }
        have += n;
    }
    Ok((head.status, head.keep))
}

/// The closed loop on one thread with an event loop (tokio, current-thread
/// runtime), as wrk does: no timers are involved, so an async runtime costs
/// no precision, and one thread multiplexing every connection spends far
/// less of the client's core on context switches than a thread each.
mod closed_loop {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub fn drive(
        addr: std::net::SocketAddr,
        workload: Arc<Workload>,
        connections: usize,
        plan: Plan,
        seed: u64,
        completed: Arc<AtomicU64>,
    ) -> Result<Vec<ConnStats>> {
        on_event_loop(async move {
            let tasks: Vec<_> = (0..connections)
                .map(|c| {
                    let (w, completed) = (workload.clone(), completed.clone());
                    let seed = seed.wrapping_add(c as u64 * 0x9E37_79B9);
                    tokio::spawn(async move { connection(addr, &w, plan, seed, &completed).await })
                })
                .collect();
            join(tasks, "connection").await
        })
    }

    /// Runs `main` on a fresh single-threaded tokio runtime (every
    /// connection or stream on this one thread, as `wrk -t1`).
    fn on_event_loop<T>(main: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(main)
    }

    /// Each task's statistics, in order; the first error or panic wins.
    async fn join(
        tasks: Vec<tokio::task::JoinHandle<Result<ConnStats>>>,
        what: &str,
    ) -> Result<Vec<ConnStats>> {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(
                t.await
                    .map_err(|_| anyhow::anyhow!("a {what} task panicked"))??,
            );
        }
        Ok(out)
    }

    async fn connection(
        addr: std::net::SocketAddr,
        w: &Workload,
        plan: Plan,
        seed: u64,
        completed: &AtomicU64,
    ) -> Result<ConnStats> {
        let mut stats = ConnStats::new()?;
        let mut rng = SplitMix64::new(seed);
        let mut stream: Option<tokio::net::TcpStream> = None;
        let mut buf = vec![0u8; 64 * 1024];
        tokio::time::sleep_until(plan.start.into()).await;
        loop {
            let due = Instant::now();
            if due >= plan.end {
                break;
            }
            let (kind, req) = w.request(&mut rng);
            if stream.is_none() {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        stream = Some(s);
                    }
                    Err(_) => {
                        if due >= plan.measure_from {
                            stats.errors += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let s = stream.as_mut().expect("connected");
            let result = match s.write_all(&req).await {
                Ok(()) => read_response(s, &mut buf).await,
                Err(e) => Err(e),
            };
            let latency = due.elapsed();
            if !stats.exchange(due >= plan.measure_from, kind, result, latency) {
                stream = None;
            }
            completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(stats)
    }

    /// HTTP/2: one connection, `streams` tasks each sending its next request
    /// as soon as the previous one is answered.
    pub fn drive_h2(
        addr: std::net::SocketAddr,
        workload: Arc<Workload>,
        streams: usize,
        plan: Plan,
        seed: u64,
        completed: Arc<AtomicU64>,
    ) -> Result<Vec<ConnStats>> {
        on_event_loop(async move {
            tokio::time::sleep_until(plan.start.into()).await;
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .context("HTTP/2 handshake (does the server speak h2c?)")?;
            tokio::spawn(conn);
            let tasks: Vec<_> = (0..streams)
                .map(|c| {
                    let (w, completed, mut sender) =
                        (workload.clone(), completed.clone(), sender.clone());
                    let seed = seed.wrapping_add(c as u64 * 0x9E37_79B9);
                    tokio::spawn(async move {
                        let mut stats = ConnStats::new()?;
                        let mut rng = SplitMix64::new(seed);
                        loop {
                            let due = Instant::now();
                            if due >= plan.end {
                                break;
                            }
                            let (kind, path, body) = w.request_parts(&mut rng);
                            let result = exchange_h2(&mut sender, &w.host, &path, body).await;
                            let latency = due.elapsed();
                            let result = result.map(|status| (status, true));
                            stats.exchange(due >= plan.measure_from, kind, result, latency);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<_, anyhow::Error>(stats)
                    })
                })
                .collect();
            join(tasks, "stream").await
        })
    }

    async fn exchange_h2(
        sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
        host: &str,
        path: &str,
        body: String,
    ) -> Result<u16> {
        use http_body_util::BodyExt;
        let req = hyper::Request::post(format!("http://{host}{path}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }

    async fn read_response(
        s: &mut tokio::net::TcpStream,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<(u16, bool)> {
        let mut len = 0;
        let head = loop {
            if let Some(h) = parse_head(&buf[..len])? {
                break h;
            }
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = s.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(bad("connection closed"));
            }
            len += n;
        };
        let mut have = len - head.end;
        while have < head.body {
            if buf.len() < head.end + head.body {
                buf.resize(head.end + head.body, 0);
            }
            let n = s
                .read(&mut buf[head.end + have..head.end + head.body])
                .await?;
            if n == 0 {
                return Err(bad("connection closed mid-body"));
            }
            have += n;
        }
        Ok((head.status, head.keep))
    }
}

fn print_table(r: &serde_json::Value) {
    let l = &r["latency_us"];
    println!(
        "{} loop, {} connections, {:.1} s: {} requests, {:.0} req/s, {} errors",
        r["mode"].as_str().unwrap_or(""),
        r["connections"],
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["requests"],
        r["throughput"].as_f64().unwrap_or(0.0),
        r["errors"]
    );
    println!(
        "latency µs   p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
        l["p50"], l["p90"], l["p99"], l["p99.9"], l["max"]
    );
    println!("status       {}", r["status"]);
    println!("by kind      {}", r["by_kind"]);
}

/// Latency by percentile, log-scaled toward the tail (as HdrHistogram plots).
fn latency_svg(r: &serde_json::Value) -> String {
    let pts: Vec<(f64, f64)> = r["percentiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .filter(|(q, _)| *q < 1.0)
                .map(|(q, v)| ((1.0 / (1.0 - q)).log10(), v / 1000.0))
                .collect()
        })
        .unwrap_or_default();
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let xmax = pts.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = pts.iter().map(|p| p.1).fold(0.001f64, f64::max) * 1.1;
    let x = |v: f64| pad + v / xmax * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / ymax * (h - 2.0 * pad);
    let path: Vec<String> = pts
        .iter()
        .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{pad}\" y=\"20\">Latency by percentile: {} loop, {} connections, {:.0} req/s</text>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>",
        r["mode"].as_str().unwrap_or(""),
        r["connections"],
        r["throughput"].as_f64().unwrap_or(0.0),
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for (label, q) in [
        ("50%", 0.5),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
    ] {
        let v = (1.0f64 / (1.0 - q)).log10();
        if v <= xmax {
            svg += &format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                x(v),
                h - pad + 16.0
            );
        }
    }
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2} ms</text>",
            pad - 4.0,
            y(v) + 4.0
        );
    }
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/></svg>\n",
        path.join(" ")
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_mixes_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_mix("recommend=3,similar=1").unwrap().len(), 2);
        assert!(parse_mix("dance=1").is_err());
    }

    #[test]
    fn zipf_draws_favour_the_head() {
        let s = Sampler::new(1000, 1.1);
        let mut rng = SplitMix64::new(1);
        let head = (0..10_000).filter(|_| s.draw(&mut rng) < 10).count();
        // P(index < 10) for Zipf(1.1) over 1,000 ids is about 0.52.
        assert!((4_500..6_000).contains(&head), "{head}");
        let u = Sampler::new(1000, 0.0);
        let head = (0..10_000).filter(|_| u.draw(&mut rng) < 10).count();
        assert!(head < 200, "{head}");
    }
}
