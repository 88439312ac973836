"""Install size and start-up time of promptbot as a GitHub job gets it. Prints figures;
asserts nothing.

1. A fresh virtual environment with `pip install .` (the runtime dependencies only, as the
   action installs them; needs the package index): the size of site-packages, per
   distribution (its RECORD), the ten largest.
2. Wall time, from process start, of
   - `promptbot --version`;
   - `promptbot event --dry-run` (plan from the payload alone);
   - `promptbot event` handling a comment (`/promptbot help`) and a closed pull request
     (a rejection) on the local forge, to exit: the whole job, no network;
   - the same two events with `--forge github` against a local socket that stands in for
     api.github.com: the time until promptbot opens its first connection — everything the
     job does before any network call (imports, payload, policy, git), PyGithub included.
   The median of --runs runs each (GitHub's own payloads from tests/reference/webhooks,
   pointed at a real proposal PR of the example repository).

Targets (issue 14): <= 250 MB installed, event handling <= 0.5 s before any network call.

    python benchmarks/startup.py [--runs 7] [--venv DIR] [--source TREE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
WEBHOOKS = PROJECT / "tests" / "reference" / "webhooks"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com", "CI": "true",
       "GIT_CONFIG_NOSYSTEM": "1"}
for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_ACTIONS", "GITHUB_API_URL",
             "ANTHROPIC_API_KEY", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "PYTHONPATH"):
    ENV.pop(name, None)

SIZES = """
import json, os, sys
from importlib.metadata import distributions
from pathlib import Path
site = Path(sys.argv[1])
def both(p):
    st = p.lstat()
    return st.st_size, st.st_blocks * 512
dists, counted = {}, set()
for dist in distributions(path=[str(site)]):
    files = {(site / f).resolve() for f in dist.files or []}
    files = {p for p in files if p.is_file() and p not in counted}
    counted |= files
    sizes = [both(p) for p in files]
    dists[dist.metadata["Name"]] = [sum(a for a, _ in sizes), sum(d for _, d in sizes)]
every = [(p.is_file() and not p.is_symlink(), *both(p)) for p in site.rglob("*")]
print(json.dumps({"dists": dists, "site": [sum(a for f, a, _ in every if f),
                                           sum(d for _, _, d in every)]}))
"""


def install(venv: Path, source: Path) -> float:
    if (venv / "bin" / "promptbot").exists():
        return 0.0
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, env=ENV, check=False)
    if done.returncode:
        raise SystemExit(f"pip install failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def sizes(venv: Path) -> None:
    """File bytes (what the files hold) and disk use (what `du` counts: whole blocks, and
    the folders), of site-packages and per distribution (the files its RECORD lists)."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    got = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", SIZES, str(site)],
                                    check=True, capture_output=True, text=True).stdout)
    dists: dict[str, list[int]] = got["dists"]
    tool = [sum(v[i] for k, v in dists.items() if k.lower() in ("pip", "setuptools"))
            for i in (0, 1)]
    mb = 1e6
    files, disk = got["site"]
    print(f"site-packages, {len(dists)} distributions: {files / mb:.0f} MB of files, "
          f"{disk / mb:.0f} MB on disk; without the venv's own pip and setuptools: "
          f"{(files - tool[0]) / mb:.0f} MB of files, {(disk - tool[1]) / mb:.0f} MB on disk")
    print("largest (MB of files / on disk):")
    for name, (size, used) in sorted(dists.items(), key=lambda kv: -kv[1][0])[:10]:
        print(f"  {name:<22} {size / mb:7.1f} {used / mb:7.1f}")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env=ENV).stdout.strip()


def example_repo(root: Path, promptbot: Path) -> tuple[int, str]:
    """The example prompts repository with real proposal PRs on its local forge."""
    root.mkdir(parents=True)
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(PROJECT / name, root / name)
    shutil.copy(PROJECT / ".gitignore", root / ".gitignore")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "prompts")
    subprocess.run([str(promptbot), "run"], cwd=root, check=True, capture_output=True, env=ENV)
    first = json.loads(subprocess.run([str(promptbot), "pr", "list", "--json"], cwd=root,
                                      check=True, capture_output=True, text=True,
                                      env=ENV).stdout)[0]
    return int(first["number"]), str(first["branch"])


def payloads(tmp: Path, number: int, branch: str, base_sha: str) -> dict[str, tuple[str, Path]]:
    comment = json.loads((WEBHOOKS / "issue_comment.created.on-pull-request.json").read_text())
    comment["issue"]["number"] = number
    comment["comment"].update(body="/promptbot help", author_association="OWNER")
    closed = json.loads((WEBHOOKS / "pull_request.closed.json").read_text())
    closed["number"] = number
    closed["pull_request"].update(number=number, merged=False)
    closed["pull_request"]["head"]["ref"] = branch
    closed["pull_request"]["base"].update(ref="main", sha=base_sha)
    out = {}
    for label, name, data in (("issue_comment", "issue_comment", comment),
                              ("pull_request closed", "pull_request", closed)):
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(data))
        out[label] = (name, path)
    return out


def wall(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def until_first_connection(argv: list[str], cwd: Path, env: dict[str, str],
                           runs: int) -> float:
    """Process start to promptbot's first connect() to the (stand-in) API, then stop it."""
    times = []
    for _ in range(runs):
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        accepted: list[float] = []

        def accept(srv: socket.socket = server, seen: list[float] = accepted) -> None:
            conn, _ = srv.accept()
            seen.append(time.perf_counter())
            conn.close()

        waiter = threading.Thread(target=accept, daemon=True)
        waiter.start()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                env={**env, "GITHUB_API_URL": f"http://127.0.0.1:{port}"})
        waiter.join(timeout=60)
        proc.kill()
        proc.wait()
        server.close()
        if not accepted:
            raise SystemExit(f"no connection from {' '.join(argv)}")
        times.append(accepted[0] - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--venv", type=Path, help="use (and keep) this venv; made if absent")
    ap.add_argument("--source", type=Path, default=PROJECT,
                    help="install promptbot from this tree, e.g. an older commit's `git "
                    "archive` to compare (default: this checkout)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="promptbot-startup-"))
    venv = args.venv or tmp / "venv"
    try:
        seconds = install(venv, args.source)
        print(f"== fresh runtime install (`pip install {args.source}` into {venv})"
              + (f": {seconds:.0f} s" if seconds else ": reused"))
        sizes(venv)
        promptbot = venv / "bin" / "promptbot"
        repo = tmp / "repo"
        number, branch = example_repo(repo, promptbot)
        events = payloads(tmp, number, branch, git(repo, "rev-parse", "main"))
        github = {**ENV, "GITHUB_TOKEN": "bench-token", "GITHUB_REPOSITORY": "bench/prompts",
                  "PROMPTBOT_GITHUB_NO_DELAY": "1"}
        print(f"\n== wall time from process start, median of {args.runs} runs "
              f"(payloads point at PR #{number})")
        rows = [("promptbot --version", wall([str(promptbot), "--version"], repo, ENV,
                                             args.runs))]
        for label, (name, path) in events.items():
            base = [str(promptbot), "event", "--name", name, "--payload", str(path)]
            rows.append((f"event {label} --dry-run",
                         wall([*base, "--dry-run"], repo, ENV, args.runs)))
            rows.append((f"event {label}, local forge, to exit",
                         wall(base, repo, ENV, args.runs)))
            rows.append((f"event {label}, github forge, to first connection",
                         until_first_connection([*base, "--forge", "github"], repo, github,
                                                args.runs)))
        for label, value in rows:
            print(f"  {label:<58} {value:6.3f} s")
        imports = subprocess.run([str(venv / "bin" / "python"), "-X", "importtime", "-c",
                                  "import bot.cli"], capture_output=True, text=True, env=ENV)
        total = [line for line in imports.stderr.splitlines() if line.endswith("| bot.cli")]
        if total:
            micros = int(total[-1].split("|")[1])
            print(f"  {'import bot.cli (-X importtime, cumulative)':<58} {micros / 1e6:6.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the venv too, unless --venv put it elsewhere


if __name__ == "__main__":
    main()
