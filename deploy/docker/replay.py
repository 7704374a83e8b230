#!/usr/bin/env python3
"""Replays the Dockerfile's stages outside Docker (no Docker engine here), so a broken step is
caught before an image build: run by scripts/check-docker.sh.

Each stage gets a root directory under --work; absolute paths the Dockerfile owns (WORKDIR,
COPY destinations, mount targets, `COPY --from` sources: /src, /out, /app, /golden) are mapped
into it, every other path (/usr, /dev/null, ...) is the host's. Per instruction:

  COPY (context)   copies from the repository, refusing sources that .dockerignore excludes
  COPY --from=S    copies from stage S's root
  RUN              runs with bash in the stage's WORKDIR and ENV, --mount=type=cache dropped
                   (the host's pip cache is used), bind mounts mapped; `cargo` is a shim
                   that checks the manifests and lock file with `cargo metadata --locked
                   --offline` and hands over the repository's target/release/concur, because
                   a full release build takes minutes on 2 cores (check-docker.sh runs
                   `cargo build --release --locked --workspace` in the repository first);
                   the shim also checks that concur's lib and bin sources are in place.
                   RUNs that only create the image's user are skipped; USER's uid is used.
  HEALTHCHECK/CMD  run in the final stage: the server on a free loopback port as the USER uid,
                   /ready polled, one /v1/embeddings request, /info's library path, the health
                   check before and during the drain, SIGTERM, exit status.

The image's config (the CMD's --config) is rewritten so its /app/... paths point at the
replayed /app. Stage `golden` is the directory of --golden (as `--build-context golden=DIR`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def say(msg: str) -> None:
    print(f"check-docker: {msg}", flush=True)


def die(msg: str) -> None:
    print(f"check-docker: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---- parsing ------------------------------------------------------------------------------

class Instr:
    def __init__(self, keyword: str, rest: str, line: int):
        self.keyword = keyword.upper()
        self.rest = rest
        self.line = line

    def flags_and_args(self) -> tuple[dict[str, list[str]], str]:
        """Splits leading --flag=value options from the rest."""
        flags: dict[str, list[str]] = {}
        rest = self.rest
        while True:
            m = re.match(r"\s*--([a-z-]+)=(\S+)\s*", rest)
            if not m:
                return flags, rest.strip()
            flags.setdefault(m.group(1), []).append(m.group(2))
            rest = rest[m.end():]


class Stage:
    def __init__(self, base: str, name: str | None, line: int):
        self.base, self.name, self.line = base, name, line
        self.instrs: list[Instr] = []


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if not logical and (raw.lstrip().startswith("#") or not raw.strip()):
            continue
        if logical and raw.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not logical:
            start = n
        if raw.rstrip().endswith("\\"):
            # Docker drops the backslash and the newline and joins the lines
            logical += raw.rstrip()[:-1] + " "
            continue
        logical += raw
        keyword, _, rest = logical.strip().partition(" ")
        instr = Instr(keyword, rest.strip(), start)
        logical = ""
        if instr.keyword == "ARG" and not stages:
            name, _, default = instr.rest.partition("=")
            args[name.strip()] = default.strip()
        elif instr.keyword == "FROM":
            words = instr.rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name, start))
        elif stages:
            stages[-1].instrs.append(instr)
    return args, stages


def json_or_shell(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        return json.loads(rest)
    return ["/bin/sh", "-c", rest]


# ---- .dockerignore ------------------------------------------------------------------------

def ignored(rel: str, patterns: list[str]) -> bool:
    """True if `rel` (or a directory above it) matches a .dockerignore pattern."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, p) or (
                p.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], p[3:])
            ):
                result = not neg
                break
    return result


def read_dockerignore(repo: Path) -> list[str]:
    f = repo / ".dockerignore"
    if not f.exists():
        return []
    return [
        line.strip()
        for line in f.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


# ---- replay -------------------------------------------------------------------------------

CARGO_SHIM = r"""#!/usr/bin/env bash
# cargo stand-in for the replay (see replay.py): manifests + lock file checked, binary handed over.
set -euo pipefail
case " $* " in
  *" build "*) ;;
  *) exec "$REAL_CARGO" "$@" ;;
esac
"$REAL_CARGO" metadata --locked --offline --format-version 1 > .cargo-metadata.json
# the source files of the concur package's lib and bin targets must be there to build
python3 - << 'PY'
import json, os
meta = json.load(open(".cargo-metadata.json"))
(pkg,) = [p for p in meta["packages"] if p["name"] == "concur"]
missing = [t["src_path"] for t in pkg["targets"]
           if set(t["kind"]) & {"lib", "bin"} and not os.path.exists(t["src_path"])]
if missing:
    raise SystemExit(f"cargo shim: missing target sources: {missing}")
PY
rm -f .cargo-metadata.json
echo "cargo shim: manifests and Cargo.lock resolve (--locked --offline), concur's lib + bin sources present"
mkdir -p target/release
cp "$REPO_BINARY" target/release/concur
"""


class Replay:
    def __init__(self, repo: Path, work: Path, golden: Path | None):
        self.repo, self.work, self.golden = repo, work, golden
        self.ignore = read_dockerignore(repo)
        self.roots: dict[str, Path] = {}
        self.owned: set[str] = set()
        shim_dir = work / "shim"
        shim_dir.mkdir(parents=True)
        (shim_dir / "cargo").write_text(CARGO_SHIM)
        (shim_dir / "cargo").chmod(0o755)
        self.shim_dir = shim_dir

    def find_owned(self, stages: list[Stage]) -> None:
        """First path components the Dockerfile creates: only these are mapped."""
        def add(p: str) -> None:
            if p.startswith("/"):
                first = p.strip("/").split("/")[0]
                if first:
                    self.owned.add(first)
        for st in stages:
            for ins in st.instrs:
                flags, rest = ins.flags_and_args()
                if ins.keyword == "WORKDIR":
                    add(rest)
                elif ins.keyword == "COPY":
                    words = rest.split()
                    add(words[-1])
                    if "from" in flags:
                        for w in words[:-1]:
                            add(w)
                elif ins.keyword == "RUN":
                    for m in flags.get("mount", []):
                        opts = dict(kv.split("=", 1) for kv in m.split(",") if "=" in kv)
                        if opts.get("type", "bind") == "bind":
                            add(opts.get("target", ""))
        for sys_dir in ("usr", "bin", "etc", "dev", "proc", "tmp", "lib", "var", "root"):
            self.owned.discard(sys_dir)

    def map_path(self, stage_root: Path, p: str, extra: dict[str, Path]) -> str:
        for prefix, target in extra.items():
            if p == prefix or p.startswith(prefix + "/"):
                return str(target) + p[len(prefix):]
        first = p.strip("/").split("/")[0]
        if p.startswith("/") and first in self.owned:
            return str(stage_root) + p
        return p

    def map_text(self, stage_root: Path, text: str, extra: dict[str, Path]) -> str:
        roots = "|".join(re.escape(o) for o in sorted(self.owned | {k.strip("/") for k in extra}))
        pattern = r"(?<![\w.~/-])(/(?:" + roots + r")(?![\w.-])(?:/[\w.@+-]*)*)"
        return re.sub(pattern, lambda m: self.map_path(stage_root, m.group(1), extra), text)

    def copy(self, src: Path, dst: str, chmod: str | None, context: bool) -> None:
        dst_path = Path(dst)
        if src.is_dir():
            # COPY dir dest copies the directory's contents into dest (created if missing);
            # from the build context, what .dockerignore excludes is not there to copy
            def skip(d: str, names: list[str]) -> list[str]:
                if not context:
                    return []
                rel = os.path.relpath(d, self.repo)
                return [n for n in names if ignored(os.path.join(rel, n), self.ignore)]

            shutil.copytree(src, dst_path, dirs_exist_ok=True, symlinks=False, ignore=skip)
            return
        if dst.endswith("/"):
            dst_path.mkdir(parents=True, exist_ok=True)
            dst_path = dst_path / src.name
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst_path, follow_symlinks=True)
        if chmod:
            dst_path.chmod(int(chmod, 8))

    def run_stage(self, st: Stage, index: int, last: bool) -> dict:
        name = st.name or str(index)
        root = self.work / "stages" / name
        root.mkdir(parents=True)
        root.chmod(0o755)
        self.roots[name] = root
        if not st.instrs:
            if name == "golden":
                if self.golden:
                    self.roots[name] = self.golden
                    say(f"stage golden: {self.golden} (as --build-context golden=...)")
                else:
                    say("stage golden: empty (no golden file: the setup skips its check)")
            return {}
        say(f"stage {name} (FROM {st.base}, Dockerfile line {st.line})")
        env = {"PATH": f"{self.shim_dir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root")}
        for k in ("PIP_CACHE_DIR", "PIP_INDEX_URL", "CARGO_HOME", "RUSTUP_HOME", "PYTHON"):
            if k in os.environ:
                env[k] = os.environ[k]
        env["REAL_CARGO"] = shutil.which("cargo", path=os.environ["PATH"]) or "cargo"
        env["REPO_BINARY"] = str(self.repo / "target/release/concur")
        cwd = root
        final: dict = {"root": root, "env": {}, "user": None}
        for ins in st.instrs:
            flags, rest = ins.flags_and_args()
            where = f"line {ins.line}: {ins.keyword} {' '.join(rest.split())[:80]}"
            if ins.keyword == "WORKDIR":
                cwd = Path(self.map_path(root, rest, {}))
                cwd.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "ENV":
                for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", rest):
                    env[k] = v.strip('"')
                    final["env"][k] = v.strip('"')
            elif ins.keyword == "COPY":
                words = shlex.split(rest)
                srcs, dst = words[:-1], self.map_path(root, words[-1], {})
                if not dst.startswith("/"):
                    dst = str(cwd / dst) + ("/" if dst.endswith("/") else "")
                chmod = (flags.get("chmod") or [None])[0]
                for s in srcs:
                    if "from" in flags:
                        src_root = self.roots.get(flags["from"][0])
                        if src_root is None:
                            die(f"{where}: stage {flags['from'][0]} not replayed before")
                        src = Path(str(src_root) + s)
                    else:
                        if ignored(s, self.ignore):
                            die(f"{where}: {s} is excluded by .dockerignore")
                        src = self.repo / s
                    if not src.exists():
                        die(f"{where}: {src} does not exist")
                    self.copy(src, dst, chmod, context="from" not in flags)
                say(f"  {where}: ok")
            elif ins.keyword == "RUN":
                extra: dict[str, Path] = {}
                for m in flags.get("mount", []):
                    opts = dict(kv.split("=", 1) for kv in m.split(",") if "=" in kv)
                    if opts.get("type", "bind") == "bind" and "from" in opts:
                        src = self.roots.get(opts["from"])
                        extra[opts["target"]] = src if src else self.work / "empty"
                        (self.work / "empty").mkdir(exist_ok=True)
                cmd = self.map_text(root, rest, extra)
                verbs = {w for w in re.findall(r"(?:^|&&|;|\|\|)\s*(\S+)", cmd)}
                if verbs <= {"groupadd", "useradd"}:
                    say(f"  {where}: skipped (creates the image's user; the replay runs as USER's uid)")
                    continue
                say(f"  {where}: running")
                t0 = time.monotonic()
                # Docker's default SHELL: /bin/sh -c (dash on Debian, as in the images)
                r = subprocess.run(["/bin/sh", "-c", cmd], check=False, cwd=cwd, env=env)
                if r.returncode != 0:
                    die(f"{where}: exit {r.returncode}")
                say(f"  {where}: ok ({time.monotonic() - t0:.1f} s)")
            elif ins.keyword == "USER":
                final["user"] = rest
            elif ins.keyword in ("EXPOSE", "HEALTHCHECK", "CMD", "STOPSIGNAL", "LABEL"):
                final[ins.keyword] = (flags, rest)
            elif ins.keyword in ("ARG",):
                pass
            else:
                die(f"{where}: the replay does not know {ins.keyword}; teach deploy/docker/replay.py")
        final["cwd"] = cwd
        return final


# ---- the runtime check --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def runtime_check(rp: Replay, final: dict) -> None:
    root: Path = final["root"]
    cmd = json_or_shell(final["CMD"][1])
    port = free_port()
    expose = final.get("EXPOSE", ({}, ""))[1].split("/")[0]
    # the image's config, with /app paths pointing at the replayed /app
    if "--config" not in cmd:
        die("CMD has no --config")
    cfg_image = cmd[cmd.index("--config") + 1]
    cfg_host = Path(rp.map_path(root, cfg_image, {}))
    text = cfg_host.read_text()
    m = re.search(r'^listen\s*=\s*"[^"]*:(\d+)"', text, re.MULTILINE)
    if not m or m.group(1) != expose:
        die(f"{cfg_image}: server.listen port {m and m.group(1)} != EXPOSE {expose}")
    say(f"{cfg_image}: listen port {expose} = EXPOSE {expose}")
    cfg_host.write_text(rp.map_text(root, text, {}))
    argv = [rp.map_path(root, a, {}) for a in cmd] + ["--listen", f"127.0.0.1:{port}"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "RUST_LOG": "info"}
    env.update(final["env"])
    prefix: list[str] = []
    user = final.get("user")
    if user and os.geteuid() == 0 and shutil.which("setpriv"):
        uid, _, gid = user.partition(":")
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"]
        # the image's files are root-owned and world-readable; the tree above must be walkable
        p = root
        while p != p.parent:
            if p.exists() and not (p.stat().st_mode & stat.S_IXOTH):
                die(f"{p} is not walkable by uid {uid}; the replay needs a 755 work directory")
            p = p.parent
        say(f"running as uid {uid} (USER {user}) with setpriv")
    log = rp.work / "server.log"
    say(f"starting: {' '.join(argv)} (cwd {final['cwd']}, log {log})")
    with open(log, "wb") as logf:
        proc = subprocess.Popen(prefix + argv, cwd=final["cwd"], env=env, stdout=logf, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                sys.stderr.write(log.read_text()[-4000:])
                die(f"the server exited with {proc.returncode} before /ready")
            try:
                if http(base + "/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 90:
                die("/ready not 200 within 90 s")
            time.sleep(0.2)
        say(f"/ready 200 after {time.monotonic() - t0:.1f} s")
        status, body = http(base + "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": ["How do I reset my password?"]})
        if status != 200:
            die(f"/v1/embeddings: {status} {body[:300]!r}")
        emb = json.loads(body)["data"][0]["embedding"]
        norm = sum(x * x for x in emb) ** 0.5
        if len(emb) != 384 or abs(norm - 1) > 1e-3:
            die(f"/v1/embeddings: {len(emb)} dims, norm {norm}")
        say(f"/v1/embeddings: 200, {len(emb)} dims, norm {norm:.4f}")
        info = json.loads(http(base + "/info")[1])
        lib = json.dumps(info)
        want = rp.map_path(root, "/app/lib/libonnxruntime.so", {})
        if want not in lib:
            die(f"/info does not name {want}: {lib[:500]}")
        say(f"/info: ONNX Runtime from {want}")
        _, hc_rest = final["HEALTHCHECK"]
        hc = [rp.map_path(root, a, {}) for a in json_or_shell(hc_rest.split("CMD", 1)[1])]
        hc_env = dict(env, HEALTHCHECK_PORT=str(port))
        r = subprocess.run(prefix + hc, check=False, env=hc_env, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"HEALTHCHECK exit {r.returncode} while ready: {r.stderr.strip()}")
        say("HEALTHCHECK: exit 0 while ready")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        r = subprocess.run(prefix + hc, check=False, env=hc_env, capture_output=True, text=True)
        if r.returncode == 0:
            die("HEALTHCHECK still healthy while draining")
        say(f"HEALTHCHECK after SIGTERM: exit {r.returncode} ({r.stderr.strip()})")
        t1 = time.monotonic()
        rc = proc.wait(timeout=30)
        if rc != 0:
            sys.stderr.write(log.read_text()[-4000:])
            die(f"server exit status {rc} after SIGTERM")
        say(f"SIGTERM: exit 0 after {time.monotonic() - t1 + 0.2:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wheels_check(rp: Replay) -> None:
    """The slim Python image has no compiler: every compiled package the stages installed must
    come from a manylinux wheel that bookworm's glibc (2.36) can load, not from a local build."""
    tags: dict[str, str] = {}
    for wheel in rp.work.glob("stages/*/**/site-packages/*.dist-info/WHEEL"):
        for line in wheel.read_text().splitlines():
            if line.startswith("Tag:"):
                tags[wheel.parent.name] = line.split(":", 1)[1].strip()
    if not tags:
        return
    bad = []
    for dist, tag in sorted(tags.items()):
        platform = tag.rsplit("-", 1)[-1]
        m = re.match(r"manylinux_(\d+)_(\d+)_", platform)
        glibc = (int(m.group(1)), int(m.group(2))) if m else (2, 17) if platform.startswith("manylinux2014") else None
        if platform != "any" and (glibc is None or glibc > (2, 36)):
            bad.append(f"{dist} ({tag})")
    if bad:
        die("packages not installed from a wheel the image can load: " + ", ".join(bad))
    say(f"{len(tags)} installed distributions, all from wheels loadable on bookworm (glibc 2.36): no compiler needed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--golden", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    a.work.chmod(0o755)
    _, stages = parse(a.repo / "Dockerfile")
    rp = Replay(a.repo.resolve(), a.work.resolve(), a.golden)
    rp.find_owned(stages)
    say(f"{len(stages)} stages: {', '.join(s.name or '?' for s in stages)}; mapped roots: "
        + " ".join(f"/{o}" for o in sorted(rp.owned)))
    final: dict = {}
    for i, st in enumerate(stages):
        final = rp.run_stage(st, i, i == len(stages) - 1)
    wheels_check(rp)
    for key in ("CMD", "HEALTHCHECK", "EXPOSE"):
        if key not in final:
            die(f"the final stage has no {key}")
    app = rp.map_path(final["root"], "/app/lib/libonnxruntime.so", {})
    if os.path.islink(app) or not os.path.isfile(app):
        die(f"{app} must be a regular file, not a symlink")
    say(f"/app/lib/libonnxruntime.so: regular file, {os.path.getsize(app) / 1e6:.1f} MB")
    app_root = Path(rp.map_path(final["root"], "/app", {}))
    sizes = []
    for entry in sorted(app_root.iterdir()):
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        sizes.append(f"{entry.name} {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    say("the image's /app: " + ", ".join(sizes) + " (binary: the local build, with line tables)")
    runtime_check(rp, final)


if __name__ == "__main__":
    main()
