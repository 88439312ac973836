"""The contenders of benchmarks/ingest.py, one per process: `python ingest_jobs.py JOB PATH CONFIG`.

JOB is `promptbot`, `scan` or `pandas`; CONFIG is JSON from ingest.py (promptbot's column
names, statuses and masks, so the other two need not import promptbot). Each prints one line:
its seconds (imports excluded) and a JSON object of checksums. Imports happen inside each job,
so a process holds only its own libraries and its peak RSS is its own.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any


def promptbot(path: str, cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """`ingest` (which ends in the per-version statistics), then the daily series that
    `promptbot analyze` reports, read from the same hourly sums and daily histograms."""
    from bot.core.metrics import quantile
    from bot.load.metrics import ingest

    t = time.perf_counter()
    s = ingest([path], window_days=3650)
    days: dict[tuple[str, str | None, Any], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for b in s.buckets:
        day = days[(b.agent_id, b.prompt_version, b.hour.date())]
        day[0] += b.executions
        day[1] += b.successes
        day[2] += b.cost_sum
    bins: dict[tuple[str, str | None, Any], dict[int, int]] = defaultdict(dict)
    for h in s.histograms:
        if h.metric == "latency":
            day_bins = bins[(h.agent_id, h.prompt_version, h.day.date())]
            day_bins[h.index] = day_bins.get(h.index, 0) + h.count
    series = {key: (n, ok / n, quantile(bins.get(key, {}), 0.95), cost)
              for key, (n, ok, cost) in days.items()}
    seconds = time.perf_counter() - t
    return seconds, {
        "rows": s.rows_read,
        "usable": s.rows_used,
        "duplicates": s.duplicates,
        "bad": s.bad_rows,
        "bad_by_reason": s.bad_by_reason,
        "failures": sum(v.executions - v.successes for v in s.versions),
        "templated": sum(e.count for e in s.error_days),
        "template_days": len(s.error_days),
        "templates": len({e.template for e in s.error_days}),
        "versions": len(s.versions),
        "days": len(series),
        "hours": len(s.buckets),
        "percentiles": {f"{v.agent_id}|{v.prompt_version}":
                        [v.latency_p50_ms, v.latency_p95_ms, v.latency_p99_ms]
                        for v in s.versions},
    }


def scan(path: str, cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """DuckDB reads and decodes every column the job reads and does nothing else with them:
    a sum of string lengths, of numbers, of epoch microseconds. (count(*), min/max and
    count(col) would come from Parquet statistics without reading any data page.)"""
    import duckdb

    con = duckdb.connect()
    parquet = path.endswith(".parquet")
    quoted = "'" + path.replace("'", "''") + "'"
    # The same reader call as promptbot's (bot/load/metrics.py), so both read the same way.
    reader = (f"read_parquet([{quoted}], union_by_name=true)" if parquet
              else f"read_csv({quoted}, header=true, store_rejects=true)")
    t = time.perf_counter()
    described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    sums = []
    for name, kind, *_ in described:
        if name not in cfg["columns"]:
            continue
        col = '"' + name.replace('"', '""') + '"'
        if kind.startswith("TIMESTAMP"):
            sums.append(f"sum(epoch_us({col}))")
        elif kind == "VARCHAR":
            sums.append(f"sum(strlen({col}))")
        else:  # numbers
            sums.append(f"sum({col})")
    row = con.execute(f"SELECT count(*), {', '.join(sums)} FROM {reader}").fetchone()
    seconds = time.perf_counter() - t
    return seconds, {"rows": int(row[0]) if row else 0, "columns": len(sums)}


def pandas(path: str, cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    import pandas as pd  # imported before the clock starts, as the other jobs' libraries

    t = time.perf_counter()
    out = pandas_analysis(path, cfg)
    seconds = time.perf_counter() - t
    per, templates = out["versions"], out["templates"]

    def key(agent_id: str, version: Any) -> str:
        return f"{agent_id}|{version or None}"

    return seconds, {
        "rows": out["rows"],
        "usable": int(per["executions"].sum()),
        "duplicates": out["duplicates"],
        "bad": sum(out["bad_by_reason"].values()),
        "bad_by_reason": out["bad_by_reason"],
        "failures": int((per["executions"] - per["successes"]).sum()),
        "templated": int(templates["count"].sum()),
        "template_days": len(templates),
        "templates": int(templates.index.get_level_values("template").nunique()),
        "versions": len(per),
        "days": len(out["daily"]),
        "hours": len(out["hourly"]),
        "percentiles": {key(a, v): [r[0.5], r[0.95], r[0.99]]
                        for (a, v), r in per[[0.5, 0.95, 0.99]].iterrows()},
        "pandas": pd.__version__,
    }


def pandas_analysis(path: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """promptbot's ingest + analysis in plain pandas, vectorized (no per-row Python): bad
    rows per reason, dedupe, hourly sums, per-version statistics with exact percentiles,
    daily series, failure templates (each distinct message masked once)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    numeric: list[str] = cfg["numeric"]
    # Text with few distinct values is read as categoricals: each value is normalized once.
    few = ("agent_id", "prompt_version", "status", "error_type", "error_message")
    if path.endswith(".parquet"):
        use = [c for c in pq.read_schema(path).names if c in cfg["columns"]]
        df = pd.read_parquet(path, columns=use, read_dictionary=[c for c in few if c in use])
    else:
        use = [c for c in pd.read_csv(path, nrows=0).columns if c in cfg["columns"]]
        # As DuckDB reads a CSV: only an empty field is missing ("NA" or "null" is text).
        df = pd.read_csv(path, engine="pyarrow", usecols=use, keep_default_na=False,
                         na_values=[""], dtype={c: "category" if c in few else "str"
                                                for c in use if c not in numeric})
    n_rows = len(df)

    def column(name: str) -> pd.Series:
        return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype="str")

    def blank_to_na(s: pd.Series) -> pd.Series:  # DuckDB's nullif(trim(x), '')
        s = s.str.strip()
        return s.where(s != "")

    def per_distinct(s: pd.Series, normalize: Any) -> pd.Series:
        """A categorical column normalized once per distinct value (NaN where `normalize`
        gives NaN)."""
        s = s.astype("category")
        distinct = pd.Series([*s.cat.categories, None], dtype="str")  # last: missing (-1)
        codes, categories = pd.factorize(normalize(distinct))
        return pd.Series(pd.Categorical.from_codes(codes[s.cat.codes.to_numpy()], categories),
                         index=s.index)

    # Timestamps: ISO 8601 with or without zone (UTC when none), or epoch seconds.
    raw_ts = column("timestamp")
    if raw_ts.dtype.kind == "M":  # typed (Parquet)
        ts = raw_ts.dt.tz_localize("UTC") if raw_ts.dt.tz is None else raw_ts
        ts = ts.dt.tz_convert("UTC")
    else:
        # cache=False: the cache only pays when values repeat (here: 4 M distinct in 10 M).
        ts = pd.to_datetime(raw_ts, format="ISO8601", utc=True, errors="coerce", cache=False)
        epoch = ts.isna() & raw_ts.str.fullmatch(r"[0-9]{9,10}(\.[0-9]+)?", na=False)
        if epoch.any():
            ts[epoch] = pd.to_datetime(raw_ts[epoch].astype(float), unit="s", utc=True)
    agent = per_distinct(column("agent_id"), blank_to_na)
    # "" stands for "no version" (a blank version is no version, so no real one is ""):
    # group keys without NaN.
    version = per_distinct(column("prompt_version"),
                           lambda s: blank_to_na(s).fillna(""))
    status = per_distinct(column("status"), lambda s: s.str.strip().str.lower())
    nums = pd.DataFrame(index=df.index)
    not_number = {}
    for name in numeric:
        raw = column(name)
        if name not in df or raw.dtype.kind in "fiub":
            nums[name] = raw.astype("float64")
        else:  # read as text: some value is not a number
            stripped = raw.str.strip()
            nums[name] = pd.to_numeric(stripped, errors="coerce").astype("float64")
            not_number[name] = stripped.notna() & (stripped != "") & nums[name].isna()

    # Bad rows: the first reason that applies, in promptbot's order (bot/load/metrics.py).
    checks = [
        ("unparseable timestamp", ts.isna()),
        ("missing agent_id", agent.isna()),
        ("unknown status", ~status.isin(cfg["statuses"])),
        *((f"{n} is not a number", not_number[n]) for n in numeric if n in not_number),
        ("negative latency_ms", nums["latency_ms"] < 0),
        ("negative token count", (nums["input_tokens"] < 0) | (nums["output_tokens"] < 0)),
        ("negative cost_usd", nums["cost_usd"] < 0),
        ("negative retries", nums["retries"] < 0),
        ("a number is not finite (inf/nan)", np.isinf(nums[[n for n in numeric if n in df]])
         .any(axis=1)),
    ]
    code = np.select([c.to_numpy(dtype=bool) for _, c in checks],
                     np.arange(1, len(checks) + 1, dtype=np.int8), 0).astype(np.int8)

    # Dedupe by trimmed execution_id: per id the earliest good row wins (a bad row only
    # when the id has no good one); every other row of the id is a duplicate.
    eid = blank_to_na(column("execution_id"))
    repeated = (eid.notna() & eid.duplicated(keep=False)).to_numpy()
    cand = pd.DataFrame({"eid": eid[repeated], "bad": code[repeated] > 0,
                         "ts": ts[repeated], "status": status[repeated].astype("str")})
    cand = cand.sort_values(["eid", "bad", "ts", "status"], na_position="last")
    loser = cand.index[cand["eid"].duplicated()].to_numpy()
    kept = np.ones(n_rows, dtype=bool)
    kept[loser] = False
    counts = np.bincount(code[kept], minlength=len(checks) + 1)
    bad_by_reason = {checks[i - 1][0]: int(n) for i, n in enumerate(counts) if i and n}

    # The usable executions, with what the sums need.
    good = kept & (code == 0)
    av = ["agent_id", "prompt_version"]
    rows = nums.assign(agent_id=agent, prompt_version=version, status=status, ts=ts)[good]
    rows["hour"] = rows["ts"].dt.floor("h")
    rows["day"] = rows["hour"].dt.floor("D")
    rows["ok"] = rows["status"] == "success"
    rows["timeout"] = rows["status"] == "timeout"
    rows["err"] = rows["status"].isin(["error", "failure"])
    rows["ll"] = np.log(np.maximum(rows["latency_ms"], 1e-3))  # NaN without a latency
    rows["ll2"] = rows["ll"] ** 2
    rows["cost2"] = rows["cost_usd"] ** 2
    has_quality, has_retries = "quality_score" in df, "retries" in df
    if has_quality:
        rows["q2"] = rows["quality_score"] ** 2
    if has_retries:
        rows["retried"] = rows["retries"] > 0

    # Hourly sums per agent, version and hour (windows are whole hours).
    sums = {
        "executions": ("ok", "size"), "successes": ("ok", "sum"),
        "timeouts": ("timeout", "sum"), "errors": ("err", "sum"),
        "latency_n": ("latency_ms", "count"), "log_latency_sum": ("ll", "sum"),
        "log_latency_sumsq": ("ll2", "sum"),
        "cost_n": ("cost_usd", "count"), "cost_sum": ("cost_usd", "sum"),
        "cost_sumsq": ("cost2", "sum"),
        "tokens_n": ("input_tokens", "count"), "output_tokens_n": ("output_tokens", "count"),
        "input_tokens_sum": ("input_tokens", "sum"),
        "output_tokens_sum": ("output_tokens", "sum"),
    }
    if has_quality:
        sums |= {"quality_n": ("quality_score", "count"),
                 "quality_sum": ("quality_score", "sum"), "quality_sumsq": ("q2", "sum")}
    if has_retries:
        sums |= {"retries_n": ("retries", "count"), "retries_sum": ("retries", "sum"),
                 "retried": ("retried", "sum")}
    hourly = rows.groupby([*av, "hour"], observed=True, sort=False).agg(**sums).reset_index()
    # A far-future tail (promptbot's isolated_tail): the last hours, more than a week after
    # the rest and holding at most 0.1 % of the rows, are set aside as bad rows.
    per_hour = hourly.groupby("hour")["executions"].sum()
    later = per_hour[::-1].cumsum()[::-1]  # rows in this hour and after it
    tail = (per_hour.index.to_series().diff() > pd.Timedelta(days=cfg["tail_days"])) & (
        later <= max(1, per_hour.sum() * cfg["tail_share"]))
    if tail.any():
        cut = tail[tail].index.max()
        bad_by_reason["timestamp far after the rest of the export"] = int(later[cut])
        hourly, rows = hourly[hourly["hour"] < cut], rows[rows["hour"] < cut]

    # Per agent and version.
    per = hourly.groupby(av, observed=True).agg(
        first_seen=("hour", "min"), last_seen=("hour", "max"),
        **{c: (c, "sum") for c in sums})
    per["last_seen"] += pd.Timedelta(hours=1)
    per["cost_per_execution"] = per["cost_sum"] / per["cost_n"]
    per["input_tokens_mean"] = per["input_tokens_sum"] / per["tokens_n"]
    per["output_tokens_mean"] = per["output_tokens_sum"] / per["output_tokens_n"]
    if has_quality:
        per["quality_mean"] = per["quality_sum"] / per["quality_n"]
    per = per.join(rows.groupby(av, observed=True)["latency_ms"]
                   .quantile([0.5, 0.95, 0.99]).unstack())

    # Daily series per agent and version.
    hourly["day"] = hourly["hour"].dt.floor("D")
    daily = hourly.groupby([*av, "day"], observed=True).agg(
        executions=("executions", "sum"), successes=("successes", "sum"),
        cost=("cost_sum", "sum"))
    daily["success_rate"] = daily["successes"] / daily["executions"]
    daily["latency_p95_ms"] = rows.groupby([*av, "day"], observed=True)["latency_ms"].quantile(
        0.95)

    # Failure templates: each distinct message masked once, then counted per template.
    def template(messages: pd.Series) -> pd.Series:
        out = messages.str.slice(0, cfg["message_limit"]).fillna("")
        for pattern, repl in cfg["masks"]:
            out = out.str.replace(pattern, repl, regex=True)
        # RE2's \s (DuckDB's regexp_replace), then DuckDB's trim (spaces only).
        return out.str.replace(r"[\t\n\f\r ]+", " ", regex=True).str.strip(" ").str.slice(
            0, 300)

    fail = rows.loc[~rows["ok"], [*av, "day", "ts", "status"]]
    fail["status"] = fail["status"].astype("str")
    fail["error_type"] = per_distinct(column("error_type")[fail.index], blank_to_na).astype(
        "str").fillna(fail["status"])
    fail["message"] = column("error_message")[fail.index]
    fail["template"] = per_distinct(fail["message"], template)
    by = [*av, "day", "status", "error_type", "template"]
    grouped = fail.groupby(by, observed=True, sort=False)
    templates = grouped.agg(count=("ts", "size"), first_seen=("ts", "min"),
                            last_seen=("ts", "max"))
    templates["example"] = fail.loc[grouped["ts"].idxmin(), "message"].astype("str").fillna(
        "").str.slice(0, 500).to_numpy()
    return {"rows": n_rows, "duplicates": len(loser), "bad_by_reason": bad_by_reason,
            "hourly": hourly, "versions": per, "daily": daily, "templates": templates}


JOBS = {"promptbot": promptbot, "scan": scan, "pandas": pandas}

if __name__ == "__main__":
    job, path, config = sys.argv[1:4]
    seconds, checks = JOBS[job](path, json.loads(config))
    print(seconds, json.dumps(checks, default=str))
