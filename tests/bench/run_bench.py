"""pip-gpu against the commands people would type instead, on the fixture index.

Run through ``nox -s bench`` (or directly: ``python tests/bench/run_bench.py --output FILE``
with pip-gpu, pytest and uv importable). It builds the PyTorch-like fixture index in a
temporary folder, serves it on 127.0.0.1, compiles the fake ``libnvidia-ml.so.1``, then
times each pip-gpu command and its hand-written baseline in the same session, interleaved
(baseline and pip-gpu alternate, the order flipping every round), and prints one Markdown
table: medians, spread (min-max), the ratio and the issue's target per row. The table is
also written to ``--output``.

Rows 11a/11b install the real torch 2.14.1 CUDA 13.0 wheel set (about 3 GB) from the
real-wheel tier (tests/support/realwheels.py) when the wheel is on this machine; otherwise
the table says NOT RUN and why.

Benchmarks are not tests: nothing here fails on time. The exit status is non-zero only
when a row could not be measured (a command failed, a tool is missing); a row not run
for want of the real wheel is not a failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugin"))

from support.fake_nvml import A100, FakeGpu, build_fake_nvml, nvml_env, write_nvml_profile  # noqa: E402
from support.index import IndexServer, build_index, pip_env, serve, uv_bin, uv_env, venv_python  # noqa: E402

PY = sys.executable
PIP_GPU = [PY, "-m", "pip_gpu"]
DRIVER = "535.104.05"  # with an A100 (sm_80): torch 2.5.1 -> cu124
LOCK_VARIANTS = ("cu121", "cu124", "cpu")
REQUIREMENTS_IN = "torch==2.5.1\ntorchvision\nfixture-app\n"
UV_PLATFORM = "x86_64-unknown-linux-gnu"


class NotMeasurable(Exception):
    """A command failed or a tool is missing: the row has no numbers."""


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def run(cmd: Sequence[str], env: dict[str, str], cwd: Optional[Path] = None, timeout: float = 300) -> float:
    """Run a command; return its wall time in seconds, or raise NotMeasurable."""
    start = time.perf_counter()
    proc = subprocess.run(
        [os.fspath(c) for c in cmd],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise NotMeasurable(f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n  " + "\n  ".join(tail))
    return elapsed


Step = Callable[[], Callable[[], float]]
"""Prepares one run outside the timed region and returns the timed part."""


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, scale: float = 1.0, unit: str = "") -> str:
        return f"{min(self.values) * scale:.0f}-{max(self.values) * scale:.0f}{unit}"


def interleaved(baseline: Step, candidate: Step, rounds: int, warmup: int = 1) -> tuple[Samples, Samples]:
    """Alternate baseline and candidate, flipping the order each round; warm-up rounds dropped."""
    base, cand = Samples(), Samples()
    for i in range(warmup + rounds):
        order = [(baseline, base), (candidate, cand)]
        if i % 2:
            order.reverse()
        for prepare, into in order:
            timed = prepare()
            elapsed = timed()
            if i >= warmup:
                into.values.append(elapsed)
    return base, cand


def fixed(cmd: Sequence[str], env: dict[str, str], cwd: Optional[Path] = None) -> Step:
    return lambda: lambda: run(cmd, env, cwd)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    number: str
    what: str
    baseline: str = ""
    pip_gpu: str = ""
    result: str = ""
    target: str = ""
    met: str = ""
    error: Optional[str] = None
    skipped: Optional[str] = None  # why the row was not run here (not a failure)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def cell(s: Samples) -> str:
    if s.median >= 10:  # as ms() writes it: seconds
        return f"{ms(s.median)} ({min(s.values):.1f}-{max(s.values):.1f} s)"
    return f"{ms(s.median)} ({s.spread(1000)})"


def ratio_row(number: str, what: str, base: Samples, cand: Samples, limit: float) -> Row:
    ratio = cand.median / base.median
    return Row(
        number,
        what,
        cell(base),
        cell(cand),
        f"{ratio:.2f}x",
        f"<= {limit:.2f}x",
        "met" if ratio <= limit else f"MISSED by {(ratio / limit - 1) * 100:.0f}%",
    )


def render(rows: list[Row], header: list[str]) -> str:
    lines = [*header, ""]
    lines.append("| # | what | baseline median (min-max) | pip-gpu median (min-max) | result | target | |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.skipped is not None:
            lines.append(f"| {r.number} | {r.what} | | | not run: {r.skipped} | {r.target} | NOT RUN |")
        elif r.error is not None:
            first = r.error.splitlines()[0]
            lines.append(f"| {r.number} | {r.what} | | | not measured: {first} | {r.target} | NOT MEASURED |")
        else:
            lines.append(
                f"| {r.number} | {r.what} | {r.baseline} | {r.pip_gpu} | {r.result} | {r.target} | {r.met} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The setting: index, fake NVML, environments
# --------------------------------------------------------------------------------------------


@dataclass
class Setting:
    root: Path
    pytorch_url: str
    pypi_url: str
    nvml_dir: Path
    env: dict[str, str]  # pip and uv isolated, fixture PyPI as the default index, fake NVML (A100)
    uv: str
    pip_template: Path  # a `python -m venv` venv, copied for each pip run
    counter: int = 0
    server: Optional[IndexServer] = None  # the fixture index (row 5b slows it down)

    def fresh(self, name: str) -> Path:
        self.counter += 1
        path = self.root / "work" / f"{name}-{self.counter}"
        path.mkdir(parents=True)
        return path

    def uv_venv(self) -> Path:
        folder = self.fresh("uvvenv") / "venv"
        run([self.uv, "venv", "--quiet", "--python", PY, str(folder)], self.env)
        return venv_python(folder)

    def pip_venv(self) -> Path:
        folder = self.fresh("pipvenv") / "venv"
        shutil.copytree(self.pip_template, folder, symlinks=True)
        return venv_python(folder)

    def with_gpus(self, gpus: Sequence[FakeGpu], driver: str = DRIVER) -> dict[str, str]:
        profile = write_nvml_profile(self.fresh("nvml") / "profile.txt", driver=driver, gpus=gpus)
        return nvml_env(self.nvml_dir, profile, base=self.env)


def compile_bytecode() -> None:
    """Write the .pyc files a pip install would have written.

    uv installs without bytecode, and where PYTHONDONTWRITEBYTECODE is set (as on CI
    machines) every run would compile pip-gpu and its dependencies from source again:
    about 80 ms of every pip-gpu command that no installed copy pays.
    """
    import sysconfig

    folders = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(REPO / "plugin")}
    # A file that does not compile (a test data file, say) is not the bench's business.
    subprocess.run(
        [PY, "-m", "compileall", "-q", "-j", "0", *sorted(folders)], capture_output=True, check=False
    )


def make_setting(root: Path) -> tuple[Setting, object]:
    compile_bytecode()
    tree = build_index(root / "index")
    server_cm = serve(tree.root, tree=tree)
    server = server_cm.__enter__()
    nvml_dir = build_fake_nvml(root / "fake_nvml")
    uv = uv_bin()
    env = {**pip_env(root / "cache" / "pip"), **uv_env(root / "cache" / "uv")}
    env["UV_DEFAULT_INDEX"] = server.pypi_url
    env["PIP_INDEX_URL"] = server.pypi_url
    env["PIP_GPU_PYTORCH_INDEX"] = server.pytorch_url
    env.pop("PYTHONPATH", None)
    profile = write_nvml_profile(root / "nvml-a100.txt", driver=DRIVER, gpus=[A100])
    env = nvml_env(nvml_dir, profile, base=env)
    probe = [PY, "-c", "import pip_gpu; print(pip_gpu.__file__)"]
    where = subprocess.run(probe, env=env, capture_output=True, text=True, check=False).stdout.strip()
    if not where.startswith(str(REPO / "plugin")):
        raise NotMeasurable(f"the commands would run {where or 'no pip_gpu'}, not this checkout's plugin/")
    template = root / "pip-template"
    run([PY, "-m", "venv", str(template)], env)
    setting = Setting(root, server.pytorch_url, server.pypi_url, nvml_dir, env, uv, template, server=server)
    return setting, server_cm


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def row_shims(s: Setting, rounds: int) -> list[Row]:
    """1. pip/uv through the shims vs the real programs."""
    try:
        shims = checkout_shims(s)
    except NotMeasurable as error:
        return [Row("1", "shim pass-through", error=str(error))]
    real_path = os.pathsep.join([str(s.pip_template / "bin"), str(Path(s.uv).parent), "/usr/bin", "/bin"])
    plain = dict(s.env, PATH=real_path)
    shimmed = dict(s.env, PATH=os.pathsep.join([str(shims), real_path]))
    target = str(venv_python(s.pip_template))
    rows = []
    cases = [
        ("pip", ["--version"], "1a", "`pip --version`"),
        ("pip", ["list"], "1b", "`pip list`"),
        ("uv", ["--version"], "1c", "`uv --version`"),
        ("uv", ["pip", "list", "--python", target], "1d", "`uv pip list`"),
    ]
    for program, args, number, what in cases:
        real = str(s.pip_template / "bin" / "pip") if program == "pip" else s.uv
        try:
            base, cand = interleaved(
                fixed([real, *args], plain), fixed([str(shims / program), *args], shimmed), rounds
            )
        except NotMeasurable as error:
            rows.append(Row(number, f"shim: {what}", error=str(error)))
            continue
        if program == "pip":
            rows.append(ratio_row(number, f"shim pass-through: {what}", base, cand, 1.03))
        else:
            delta = (cand.median - base.median) * 1000
            rows.append(
                Row(
                    number,
                    f"shim pass-through: {what}",
                    cell(base),
                    cell(cand),
                    f"{delta:+.1f} ms",
                    "<= +5 ms",
                    "met" if delta <= 5 else f"MISSED by {delta - 5:.1f} ms",
                )
            )
    return rows


def checkout_shims(s: Setting) -> Path:
    """The shims, installed by this checkout's pip-gpu and running this checkout's code."""
    shims = s.root / "shims"
    if not shims.exists():
        run([*PIP_GPU, "shim", "install", "--dir", str(shims)], s.env)
    script = (shims / "pip").read_text(encoding="utf-8")
    if f"_pg_path='{REPO / 'plugin'}'" not in script:
        raise NotMeasurable(f"the shims do not run this checkout's pip_gpu ({REPO / 'plugin'})")
    return shims


def row_shim_install(s: Setting, rounds: int, installer: str, dry_run: bool = False) -> Row:
    """1e/1f/1g. A non-torch install through the shim (which first checks whether the
    resolution brings in the torch family) vs the real program, into fresh environments."""
    packages = ["fixture-app"] if dry_run else ["fixture-app", "numpy"]
    extra = ["--dry-run"] if dry_run else []
    number = "1g" if dry_run else "1e" if installer == "pip" else "1f"
    command = "pip" if installer == "pip" else "uv pip"
    what = f"shim: non-torch `{command} install {' '.join([*extra, *packages])}`"
    try:
        shims = checkout_shims(s)
    except NotMeasurable as error:
        return Row(number, what, target="<= 1.20x", error=str(error))

    def step(through_shim: bool) -> Step:
        def prepare() -> Callable[[], float]:
            folder = s.fresh("shim-install") / "venv"
            if installer == "pip":
                run([PY, "-m", "venv", str(folder)], s.env)
            else:
                run([s.uv, "venv", "--quiet", "--python", PY, str(folder)], s.env)
            path = [str(folder / "bin"), str(Path(s.uv).parent), "/usr/bin", "/bin"]
            if through_shim:
                path.insert(0, str(shims))
            env = dict(s.env, PATH=os.pathsep.join(path), VIRTUAL_ENV=str(folder))
            cmd = (
                ["pip", "install", "-q", *extra, *packages]
                if installer == "pip"
                else ["uv", "pip", "install", "-q", *extra, *packages]
            )
            return lambda: run(["/bin/sh", "-c", " ".join(cmd)], env, folder.parent)

        return prepare

    try:
        base, cand = interleaved(step(False), step(True), rounds)
    except NotMeasurable as error:
        return Row(number, what, target="<= 1.20x", error=str(error))
    return ratio_row(number, what, base, cand, 1.20)


NETWORK_PROBE = r"""
import atexit, runpy, sys
events = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request", "http.client.connect"):
        events.append(event)
sys.addaudithook(hook)
atexit.register(lambda: sys.stderr.write("pip-gpu-bench network events: %d\n" % len(events)))
sys.argv = ["pip-gpu", *sys.argv[1:]]
runpy.run_module("pip_gpu", run_name="__main__", alter_sys=True)
"""


def network_events(env: dict[str, str], args: Sequence[str]) -> int:
    proc = subprocess.run(
        [PY, "-c", NETWORK_PROBE, *args], env=env, capture_output=True, text=True, check=False
    )
    for line in proc.stderr.splitlines():
        if line.startswith("pip-gpu-bench network events:"):
            return int(line.rsplit(":", 1)[1])
    raise NotMeasurable(f"network probe failed: {proc.stderr.strip()[-400:]}")


DECISION_LIMIT_MS = 40  # issue 18: a decision at most 40 ms over the interpreter's start-up

DECISIONS = (
    ("2", ["explain", "torch", "--json"], "decision: `pip-gpu explain torch --json` (fake NVML, 1 GPU)"),
    (
        "2b",
        ["explain", "torch==2.5.1", "--json"],
        "decision: `explain torch==2.5.1 --json` (fake NVML)",
    ),
    ("2c", ["detect", "--json"], "detection: `pip-gpu detect --json` (fake NVML, 1 GPU)"),
)


def row_decision(s: Setting, rounds: int) -> list[Row]:
    """2. explain/detect --json with NVML present vs the interpreter's startup floor, interleaved."""
    cwd = s.fresh("explain")
    target = f"<= floor + {DECISION_LIMIT_MS} ms, no network"
    try:
        commands = {number: [*PIP_GPU, *args] for number, args, _ in DECISIONS}
        commands["floor"] = [PY, "-c", "pass"]
        samples = {key: Samples() for key in commands}
        for i in range(rounds + 1):
            order = list(commands) if i % 2 == 0 else list(reversed(commands))
            for key in order:
                elapsed = run(commands[key], s.env, cwd)
                if i:
                    samples[key].values.append(elapsed)
        events = {number: network_events(s.env, args) for number, args, _ in DECISIONS}
    except NotMeasurable as error:
        return [Row("2", "decision: `pip-gpu explain torch --json`", target=target, error=str(error))]
    floor = samples["floor"]
    rows = []
    for number, _, what in DECISIONS:
        delta = (samples[number].median - floor.median) * 1000
        miss = []
        if delta > DECISION_LIMIT_MS:
            miss.append(f"by {delta - DECISION_LIMIT_MS:.0f} ms")
        if events[number]:
            miss.append(f"{events[number]} network calls")
        rows.append(
            Row(
                number,
                f"{what} vs `python -c pass`",
                cell(floor),
                cell(samples[number]),
                f"floor {delta:+.0f} ms; network calls: {events[number]}",
                target,
                "MISSED " + ", ".join(miss) if miss else "met",
            )
        )
    return rows


def row_unanswered_index(s: Setting, rounds: int) -> Row:
    """9. An open request against an index that accepts connections and never answers.

    The question whether a newer torch exists is bounded (2 s by default); each run gets a fresh
    cache so the "not asked again for 15 minutes" shortcut does not hide the wait.
    """
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete in the kernel; nothing is ever read or sent
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/whl"
    what = "freshness: `explain torch` against an index that never answers vs `--offline`"

    def step(*extra: str) -> Step:
        def prepare() -> Callable[[], float]:
            env = {**s.env, "XDG_CACHE_HOME": str(s.fresh("cache")), "PIP_GPU_PYTORCH_INDEX": url}
            env.pop("PIP_GPU_OFFLINE", None)
            return lambda: run([*PIP_GPU, "explain", "torch", "--json", *extra], env, s.fresh("fresh"))

        return prepare

    try:
        offline, silent_index = interleaved(step("--offline"), step(), rounds)
    except NotMeasurable as error:
        return Row("9", what, target="< 5 s", error=str(error))
    finally:
        silent.close()
    worst = max(silent_index.values)
    return Row(
        "9",
        what,
        cell(offline),
        cell(silent_index),
        f"worst {worst:.1f} s",
        "< 5 s, and still decides",
        "met" if worst < 5 else "MISSED",
    )


def row_install(s: Setting, rounds: int, installer: str) -> Row:
    """3/4. pip-gpu install vs the expert's hand-written install, fresh venvs, warm caches."""
    variant = f"{s.pytorch_url}/cu124"
    pins = ["torch==2.5.1+cu124", "torchvision==0.20.1+cu124"]
    make = s.uv_venv if installer == "uv" else s.pip_venv

    def baseline() -> Callable[[], float]:
        python = make()
        if installer == "uv":
            cmd = [s.uv, "pip", "install", "--python", str(python), "--index", f"pytorch={variant}"]
            cmd += ["--index-strategy", "first-index", *pins]
        else:
            cmd = [str(python), "-m", "pip", "install", "--index-url", variant, *pins]
        return lambda: run(cmd, s.env, python.parent)

    def candidate() -> Callable[[], float]:
        python = make()
        cwd = s.fresh("install-cwd")
        cmd = [*PIP_GPU, "install", "torch==2.5.1", "torchvision", "--python", str(python)]
        cmd += ["--installer", installer]
        return lambda: run(cmd, s.env, cwd)

    number, limit = ("3", 1.15) if installer == "uv" else ("4", 1.10)
    what = f"install, {installer} engine: torch==2.5.1 torchvision into a fresh venv"
    try:
        base, cand = interleaved(baseline, candidate, rounds)
    except NotMeasurable as error:
        return Row(number, what, target=f"<= {limit:.2f}x", error=str(error))
    return ratio_row(number, what, base, cand, limit)


def row_install_static_mirror(s: Setting, rounds: int) -> Row:
    """4b. Row 4 on a mirror without PEP 658 metadata (a plain static-file mirror, issue 25).

    pip must download a wheel there to read its dependencies; the pip route resolves first,
    and must still fetch each torch-family file once. The torch wheel GETs of the last
    round of each side are counted and shown."""
    assert s.server is not None
    server = s.server
    variant = f"{s.pytorch_url}/cu124"
    torch_gets: dict[str, int] = {}
    # The caches of the other rows hold pages that announce metadata this mirror lacks.
    env = {**s.env, "UV_CACHE_DIR": str(s.fresh("uv-cache")), "XDG_CACHE_HOME": str(s.fresh("cache"))}

    def counted(side: str, cmd: list[str], cwd: Path) -> Callable[[], float]:
        def timed() -> float:
            server.clear_requests()
            elapsed = run(cmd, env, cwd)
            wheels = [r for r in server.requests if r.method == "GET" and "/torch-" in r.path]
            torch_gets[side] = len([r for r in wheels if r.path.endswith(".whl")])
            return elapsed

        return timed

    def baseline() -> Callable[[], float]:
        python = s.pip_venv()
        cmd = [str(python), "-m", "pip", "install", "--index-url", variant, "torch==2.5.1+cu124"]
        return counted("pip", cmd, python.parent)

    def candidate() -> Callable[[], float]:
        python = s.pip_venv()
        cmd = [*PIP_GPU, "install", "torch==2.5.1", "--python", str(python)]
        return counted("pip-gpu", [*cmd, "--installer", "pip"], s.fresh("install-cwd"))

    what = "install, pip engine, static mirror without PEP 658 metadata: torch==2.5.1 into a fresh venv"
    server.no_metadata = True
    try:
        base, cand = interleaved(baseline, candidate, rounds)
    except NotMeasurable as error:
        return Row("4b", what, target="<= 1.10x", error=str(error))
    finally:
        server.no_metadata = False
    row = ratio_row("4b", what, base, cand, 1.10)
    row.result += f"; torch wheel GETs: pip {torch_gets.get('pip')}, pip-gpu {torch_gets.get('pip-gpu')}"
    return row


def write_requirements(folder: Path) -> Path:
    path = folder / "requirements.in"
    path.write_text(REQUIREMENTS_IN, encoding="utf-8")
    return path


def compile_by_hand(s: Setting, variants: Sequence[str]) -> Step:
    """What an expert types: one `uv pip compile` per variant, one after the other."""

    def prepare() -> Callable[[], float]:
        cwd = s.fresh("compile")
        req = write_requirements(cwd)

        def timed() -> float:
            total = 0.0
            for variant in variants:
                cmd = [s.uv, "pip", "compile", str(req), "--python", PY, "--quiet", "--no-header"]
                cmd += ["--index", f"pytorch={s.pytorch_url}/{variant}", "--index-strategy", "first-index"]
                cmd += ["--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}"]
                cmd += ["--python-platform", UV_PLATFORM]
                cmd += ["--format", "pylock.toml", "-o", str(cwd / f"pylock.{variant}.toml")]
                total += run(cmd, s.env, cwd)
            return total

        return timed

    return prepare


def pip_gpu_lock(s: Setting, variants: Sequence[str]) -> Step:
    def prepare() -> Callable[[], float]:
        cwd = s.fresh("lock")
        write_requirements(cwd)
        cmd = [*PIP_GPU, "lock", "-r", "requirements.in", "--variants", ",".join(variants)]
        return lambda: run(cmd, s.env, cwd)

    return prepare


def row_lock(s: Setting, rounds: int) -> Row:
    """5. pip-gpu lock over three variants vs three sequential uv pip compile runs."""
    what = f"lock: `pip-gpu lock --variants {','.join(LOCK_VARIANTS)}` vs 3 sequential `uv pip compile`"
    try:
        base, cand = interleaved(compile_by_hand(s, LOCK_VARIANTS), pip_gpu_lock(s, LOCK_VARIANTS), rounds)
    except NotMeasurable as error:
        return Row("5", what, target="<= 0.60x", error=str(error))
    return ratio_row("5", what, base, cand, 0.60)


SLOW_INDEX_DELAY_S = 0.05


def row_lock_slow_index(s: Setting, rounds: int) -> Row:
    """5b. Row 5 with every index request answered 50 ms late (a distant index): where resolving
    outweighs pip-gpu's own fixed cost, one uv run per variant, run side by side, should show."""
    what = (
        f"lock, index {SLOW_INDEX_DELAY_S * 1000:.0f} ms a request: `pip-gpu lock --variants "
        f"{','.join(LOCK_VARIANTS)}` vs 3 sequential `uv pip compile`"
    )
    if s.server is None:
        return Row("5b", what, target="<= 0.60x", error="no fixture index to slow down")
    s.server.delay_s = SLOW_INDEX_DELAY_S
    try:
        base, cand = interleaved(compile_by_hand(s, LOCK_VARIANTS), pip_gpu_lock(s, LOCK_VARIANTS), rounds)
    except NotMeasurable as error:
        return Row("5b", what, target="<= 0.60x", error=str(error))
    finally:
        s.server.delay_s = 0.0
    return ratio_row("5b", what, base, cand, 0.60)


# A real project's requirements (issue 27): vLLM's requirements/cuda.txt has about 60 packages
# with `-r common.txt`; this fixture has the same size and depth. Packages that need the torch
# family are spread through it (as compressed-tensors, outlines, xformers are in vLLM's).
PROJECT_PACKAGES = 60
PROJECT_NEEDS_TORCH = {7: "torch==2.5.1", 19: "torch>=2.0", 33: "torchvision>=0.20", 47: "torch"}


def project_requirements(s: Setting) -> tuple[str, dict[str, str]]:
    """Write ~60 packages (each needing the next few) into a default index beside the fixture
    PyPI, and a `cuda.txt` that pulls in `common.txt`; returns (index URL, the two files)."""
    from support.index import pytorch_index as fixture

    root = s.root / "index"
    dists = []
    for n in range(PROJECT_PACKAGES):
        requires = [
            f"project-lib-{m:02d}>=1.0" for m in (n + 1, n + 7) if m < PROJECT_PACKAGES and n % 3 == 0
        ]
        requires += [PROJECT_NEEDS_TORCH[n]] if n in PROJECT_NEEDS_TORCH else []
        requires += ["numpy"] if n % 10 == 5 else []
        for version in ("1.0.0", "1.1.0"):
            module = f"project_lib_{n:02d}"
            dists.append(
                fixture._Dist(
                    f"project-lib-{n:02d}", version, ((f"{module}/__init__.py", ""),), tuple(requires)
                )
            )
    written: list[object] = []
    for dist in dists:
        url_path = f"/pypi/packages/{dist.filename}"
        data, meta = dist.wheel_bytes(), dist.metadata()
        fixture._write(root / url_path.lstrip("/"), data)
        fixture._write(root / (url_path.lstrip("/") + ".metadata"), meta)
        written.append(
            fixture.WheelFile(
                fixture._normalize(dist.name),
                dist.version,
                dist.filename,
                url_path,
                hashlib.sha256(data).hexdigest(),
                len(data),
                None,
                hashlib.sha256(meta).hexdigest(),
            )
        )
    projects = dict(s.server.tree.projects[fixture.PYPI]) if s.server and s.server.tree else {}
    for wheel in written:
        projects[wheel.project] = (*projects.get(wheel.project, ()), wheel)  # type: ignore[attr-defined]
    fixture._write_simple(root / "pypi" / "project" / "simple", projects)
    common = "".join(f"project-lib-{n:02d}>=1.0\n" for n in range(0, 40))
    cuda = "-r common.txt\n\n# the torch family\ntorch==2.5.1\ntorchvision\nxformers==0.0.28.post2\n"
    cuda += "".join(f"project-lib-{n:02d}\n" for n in range(40, PROJECT_PACKAGES))
    return f"{s.server.base_url if s.server else ''}/pypi/project/simple", {
        "common.txt": common,
        "cuda.txt": cuda,
    }


def row_project(s: Setting, rounds: int) -> list[Row]:
    """12. A real project's requirements (~60 packages, `-r` nesting): explain -r, install
    --dry-run and lock, each against one routed `uv pip compile` of the same file."""
    if s.server is None:
        return [Row("12", "a real project's requirements", error="no fixture index")]
    index, files = project_requirements(s)
    env = {**s.env, "UV_DEFAULT_INDEX": index, "PIP_INDEX_URL": index}

    def folder() -> Path:
        cwd = s.fresh("project")
        for name, text in files.items():
            (cwd / name).write_text(text, encoding="utf-8")
        return cwd

    def compile_by_hand() -> Callable[[], float]:
        cwd = folder()
        cmd = [s.uv, "pip", "compile", "cuda.txt", "--python", PY, "--quiet", "--no-header", "-o", "out.txt"]
        cmd += ["--index", f"pytorch={s.pytorch_url}/cu124", "--index-strategy", "first-index"]
        return lambda: run(cmd, env, cwd)

    venv = s.uv_venv()
    commands = {
        "12a": ("`pip-gpu explain -r cuda.txt`", ["explain", "-r", "cuda.txt"]),
        "12b": (
            "`pip-gpu install --dry-run -r cuda.txt` (uv)",
            ["install", "--dry-run", "-r", "cuda.txt", "--python", str(venv), "--installer", "uv"],
        ),
        "12c": (
            "`pip-gpu lock -r cuda.txt --variants cu124`",
            ["lock", "-r", "cuda.txt", "--variants", "cu124"],
        ),
    }
    rows = []
    for number, (shown, args) in commands.items():
        what = f"a project's ~{PROJECT_PACKAGES} requirements (`-r` nesting): {shown} vs one `uv pip compile`"

        def candidate(args: list[str] = args) -> Callable[[], float]:
            cwd = folder()
            return lambda: run([*PIP_GPU, *args], env, cwd)

        try:
            base, cand = interleaved(compile_by_hand, candidate, rounds)
        except NotMeasurable as error:
            rows.append(Row(number, what, target="<= 3.00x", error=str(error)))
            continue
        rows.append(ratio_row(number, what, base, cand, 3.0))
    return rows


def row_sync(s: Setting, rounds: int) -> Row:
    """6. pip-gpu sync (chooses cu124 on the A100/535 host) vs uv pip sync pylock.cu124.toml."""
    what = "sync: `pip-gpu sync` vs `uv pip sync pylock.cu124.toml`, fresh uv venv"
    try:
        locks = s.fresh("locks")
        write_requirements(locks)
        run([*PIP_GPU, "lock", "-r", "requirements.in", "--variants", ",".join(LOCK_VARIANTS)], s.env, locks)

        def baseline() -> Callable[[], float]:
            python = s.uv_venv()
            cmd = [s.uv, "pip", "sync", "--python", str(python), "pylock.cu124.toml"]
            return lambda: run(cmd, s.env, locks)

        def candidate() -> Callable[[], float]:
            python = s.uv_venv()
            cmd = [*PIP_GPU, "sync", "--python", str(python), "--installer", "uv"]
            return lambda: run(cmd, s.env, locks)

        base, cand = interleaved(baseline, candidate, rounds)
    except NotMeasurable as error:
        return Row("6", what, target="<= 1.10x", error=str(error))
    return ratio_row("6", what, base, cand, 1.10)


def gpus(n: int) -> list[FakeGpu]:
    return [
        FakeGpu(A100.name, A100.cc, A100.mem_mib, f"GPU-{i:08x}-0000-4000-8000-{i:012x}") for i in range(n)
    ]


def row_scale(s: Setting, rounds: int, lock_rounds: int) -> list[Row]:
    """7. How the decision grows with GPUs (1, 8, 64) and lock with variants."""
    rows: list[Row] = []
    cwd = s.fresh("scale")
    try:
        envs = {n: s.with_gpus(gpus(n)) for n in (1, 8, 64)}
        samples = {n: Samples() for n in envs}
        for i in range(rounds + 1):
            order = list(envs) if i % 2 == 0 else list(reversed(envs))
            for n in order:
                elapsed = run([*PIP_GPU, "explain", "torch", "--json"], envs[n], cwd)
                if i:
                    samples[n].values.append(elapsed)
        one = samples[1].median
        parts = [f"{n} GPUs {ms(samples[n].median)} ({samples[n].median / one:.2f}x)" for n in samples]
        rows.append(
            Row(
                "7a",
                "scale: decision (`explain --json`, fake NVML) over 1 / 8 / 64 GPUs",
                "1 GPU: " + cell(samples[1]),
                "64 GPUs: " + cell(samples[64]),
                "; ".join(parts),
                "report growth",
                "reported",
            )
        )
    except NotMeasurable as error:
        rows.append(Row("7a", "scale: decision over 1 / 8 / 64 GPUs", error=str(error)))
    # The fixture publishes torch 2.5.1 for 4 variants (cpu, cu118, cu121, cu124): 8 cannot be had.
    sets = {1: ("cu124",), 2: ("cu124", "cpu"), 4: ("cu118", "cu121", "cu124", "cpu")}
    try:
        lock_samples = {n: Samples() for n in sets}
        hand = {n: Samples() for n in sets}
        for i in range(lock_rounds + 1):
            for n, variants in sets.items():
                a = pip_gpu_lock(s, variants)()()
                b = compile_by_hand(s, variants)()()
                if i:
                    lock_samples[n].values.append(a)
                    hand[n].values.append(b)
        one = lock_samples[1].median
        parts = [
            f"{n} variant{'s' if n > 1 else ''} {ms(lock_samples[n].median)} "
            f"({lock_samples[n].median / one:.2f}x; by hand {ms(hand[n].median)})"
            for n in sets
        ]
        rows.append(
            Row(
                "7b",
                "scale: `pip-gpu lock` over 1 / 2 / 4 variants (8: the fixture has 4 builds of torch 2.5.1)",
                "by hand, 4: " + cell(hand[4]),
                "4 variants: " + cell(lock_samples[4]),
                "; ".join(parts),
                "report growth",
                "reported",
            )
        )
    except NotMeasurable as error:
        rows.append(Row("7b", "scale: lock over 1 / 2 / 4 variants", error=str(error)))
    return rows


def write_fleet(folder: Path, count: int) -> Path:
    """``kubectl get nodes -o json`` for ``count`` nodes of three kinds (A100/535, V100/470, CPU)."""
    kinds: list[dict[str, str]] = [
        {
            "nvidia.com/cuda.driver-version.full": "535.104.05",
            "nvidia.com/gpu.compute.major": "8",
            "nvidia.com/gpu.compute.minor": "0",
            "nvidia.com/gpu.count": "8",
        },
        {
            "nvidia.com/cuda.driver-version.full": "470.82.01",
            "nvidia.com/gpu.compute.major": "7",
            "nvidia.com/gpu.compute.minor": "0",
            "nvidia.com/gpu.count": "4",
        },
        {},
    ]
    items = [
        {
            "kind": "Node",
            "metadata": {
                "name": f"node-{i}",
                "labels": {"kubernetes.io/hostname": f"node-{i}", **kinds[i % 3]},
            },
        }
        for i in range(count)
    ]
    path = folder / f"nodes-{count}.json"
    path.write_text(json.dumps({"kind": "List", "items": items}), encoding="utf-8")
    return path


def row_fleet(s: Setting, rounds: int) -> Row:
    """7c (optional: not in the default run). `fleet plan` over 1,000 and 100,000 nodes."""
    folder = s.fresh("fleet")
    try:
        files = {n: write_fleet(folder, n) for n in (1_000, 100_000)}
        samples = {n: Samples() for n in files}
        for i in range(rounds + 1):
            for n, path in files.items():
                elapsed = run(
                    [*PIP_GPU, "fleet", "plan", "torch==2.5.1", "--nodes", path, "--json"], s.env, folder
                )
                if i:
                    samples[n].values.append(elapsed)
        small, large = samples[1_000].median, samples[100_000].median
        return Row(
            "7c",
            "scale: `fleet plan` over 1,000 / 100,000 nodes of 3 kinds (decided once per kind)",
            "1,000 nodes: " + cell(samples[1_000]),
            "100,000 nodes: " + cell(samples[100_000]),
            f"100x the nodes: {large / small:.1f}x the time",
            "100,000 nodes within a few seconds",
            "met" if large < 10 else "MISSED",
        )
    except NotMeasurable as error:
        return Row("7c", "scale: fleet plan over 1,000 / 100,000 nodes", error=str(error))


# --- 10. memory ----------------------------------------------------------------------------

RSS_PROBE = r"""
import atexit, resource, runpy, sys
def report():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write("pip-gpu-bench peak rss: %d %d\n" % (own, children))
atexit.register(report)
sys.argv = ["pip-gpu", *sys.argv[1:]]
runpy.run_module("pip_gpu", run_name="__main__", alter_sys=True)
"""


def peak_rss(args: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[int, int]:
    """(pip-gpu's own peak RSS, the largest of the programs it ran), in KiB (Linux ru_maxrss)."""
    proc = subprocess.run(
        [PY, "-c", RSS_PROBE, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    for line in proc.stderr.splitlines():
        if line.startswith("pip-gpu-bench peak rss:") and proc.returncode == 0:
            own, children = line.rsplit(":", 1)[1].split()
            return int(own), int(children)
    tail = proc.stderr.strip().splitlines()[-6:]
    raise NotMeasurable(f"exit {proc.returncode}: pip-gpu {' '.join(args)}\n  " + "\n  ".join(tail))


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


# One torch release has at most four builds on the fixture (2.5.1: cpu, cu118, cu121, cu124); an
# open torch would lock each variant's newest release in the knowledge, which the fixture lacks.
MEMORY_LOCKS = {1: ("cu124",), 2: ("cu124", "cpu"), 4: ("cpu", "cu118", "cu121", "cu124")}


def row_memory(s: Setting, rounds: int) -> list[Row]:
    """10. Peak RSS: `lock` over 1 / 2 / 4 variants, a decision over 1 and 64 GPUs."""
    rows: list[Row] = []
    try:
        floor = max(peak_rss(["--version"], s.env, s.fresh("rss")) for _ in range(rounds))
        cells = []
        for n, variants in MEMORY_LOCKS.items():
            own, child = 0, 0
            for _ in range(rounds):
                cwd = s.fresh("rss-lock")
                write_requirements(cwd)
                args = ["lock", "-r", "requirements.in", "--variants", ",".join(variants)]
                got = peak_rss(args, s.env, cwd)
                own, child = max(own, got[0]), max(child, got[1])
            cells.append(f"{n} variant{'s' if n > 1 else ''}: {mib(own)} (uv {mib(child)})")
        rows.append(
            Row(
                "10a",
                "memory: peak RSS of `pip-gpu lock` over 1 / 2 / 4 variants (8: the fixture has 4 builds "
                "of torch 2.5.1); in brackets the largest uv it ran",
                f"`pip-gpu --version`: {mib(floor[0])}",
                cells[-1],
                "; ".join(cells),
                "report",
                "reported",
            )
        )
    except NotMeasurable as error:
        rows.append(Row("10a", "memory: peak RSS of lock over 1 / 2 / 4 variants", error=str(error)))
    try:
        decisions = []
        for n in (1, 64):
            env = s.with_gpus(gpus(n))
            args = ["explain", "torch", "--json"]
            own = max(peak_rss(args, env, s.fresh("rss-explain"))[0] for _ in range(rounds))
            decisions.append(f"{n} GPU{'s' if n > 1 else ''}: {mib(own)}")
        rows.append(
            Row(
                "10b",
                "memory: peak RSS of a decision (`explain torch --json`, fake NVML) over 1 / 64 GPUs",
                f"`pip-gpu --version`: {mib(floor[0])}",
                decisions[-1],
                "; ".join(decisions),
                "report",
                "reported",
            )
        )
    except NotMeasurable as error:
        rows.append(Row("10b", "memory: peak RSS of a decision over 64 GPUs", error=str(error)))
    return rows


# --- 11. real-size installs ------------------------------------------------------------------

# The real-wheel tier (tests/support/realwheels.py): the real torch 2.14.1 CUDA 13.0 wheel,
# relabelled 2.14.1+cu130 as download.pytorch.org/whl/cu130 serves it, with its real
# dependencies (cuda-toolkit, nvidia-*, triton, ...: about 3 GB installed) and numpy >= 2.3 from
# a stand-in PyPI. An H200 on driver 580 runs the cu130 build; pip-gpu is told the variant, as
# the real-wheel test does (on 580 minor-version compatibility would also admit cu132).
REAL_HOST = ["--driver", "580.159.04", "--compute-capability", "9.0"]


def real_wheel_available() -> Optional[str]:
    """None when the real torch 2.14.1 wheel can be had without a download, else why not."""
    from support.realwheels import LOCAL_COPIES, TORCH, cache_dir

    wanted = f"torch-{TORCH}-cp{sys.version_info[0]}{sys.version_info[1]}-"
    for folder in (cache_dir() / "pool", *LOCAL_COPIES):
        if folder.is_dir() and any(p.name.startswith(wanted) for p in folder.iterdir()):
            return None
    return (
        f"the real torch {TORCH} wheel for this Python is not on this machine "
        f"(looked in {cache_dir() / 'pool'} and {', '.join(map(str, LOCAL_COPIES))}); "
        f"`pip download torch=={TORCH} --no-deps -d {cache_dir() / 'pool'}` (555 MB) makes the rows run"
    )


def row_real(s: Setting, rounds: int) -> list[Row]:
    """11a/11b. A real-size install and sync (about 3 GB, warm uv cache, fresh venv per round)."""
    what_install = (
        "real size, uv: `pip-gpu install torch==2.14.1 numpy>=2.3` vs the expert uv one-liner, "
        "real torch 2.14.1+cu130 wheels, warm cache"
    )
    what_sync = "real size, uv: `pip-gpu sync` vs `uv pip sync pylock.cu130.toml`, real wheels, warm cache"
    missing = real_wheel_available()
    if missing is not None:
        return [
            Row("11a", what_install, target="<= 1.10x", skipped=missing),
            Row("11b", what_sync, target="<= 1.10x", skipped=missing),
        ]
    from support.realwheels import LABEL, TORCH, real_index

    rows: list[Row] = []
    with real_index() as real:
        # s.env with the real tier's caches (uv_env() would bring back os.environ's PYTHONPATH)
        env = dict(s.env, UV_CACHE_DIR=str(real.uv_cache), PIP_CACHE_DIR=str(real.pip_cache))
        env.update(PIP_INDEX_URL=real.default_url, UV_DEFAULT_INDEX=real.default_url, UV_LINK_MODE="hardlink")
        env["PIP_GPU_PYTORCH_INDEX"] = real.pytorch_url
        variant_url = f"{real.pytorch_url}/{LABEL}"

        def venv() -> Path:
            folder = s.fresh("realvenv") / "venv"
            run([s.uv, "venv", "--quiet", "--python", PY, str(folder)], env)
            return venv_python(folder)

        def expert() -> Callable[[], float]:
            python = venv()
            cmd = [s.uv, "pip", "install", "--quiet", "--python", str(python), "--index"]
            cmd += [f"pytorch={variant_url}", "--index-strategy", "unsafe-best-match"]
            cmd += [f"torch=={TORCH}+{LABEL}", "numpy>=2.3"]
            return lambda: run(cmd, env, python.parent, timeout=1800)

        def pip_gpu_install() -> Callable[[], float]:
            python = venv()
            cwd = s.fresh("real-install")
            cmd = [*PIP_GPU, "install", "--quiet", f"torch=={TORCH}", "numpy>=2.3", "--python", str(python)]
            cmd += ["--installer", "uv", *REAL_HOST, "--variant", LABEL]
            return lambda: run(cmd, env, cwd, timeout=1800)

        try:
            base, cand = interleaved(expert, pip_gpu_install, rounds)
            rows.append(ratio_row("11a", what_install, base, cand, 1.10))
        except NotMeasurable as error:
            rows.append(Row("11a", what_install, target="<= 1.10x", error=str(error)))

        try:
            locks = s.fresh("real-locks")
            (locks / "requirements.in").write_text(f"torch=={TORCH}\nnumpy>=2.3\n", encoding="utf-8")
            run([*PIP_GPU, "lock", "-r", "requirements.in", "--variants", LABEL], env, locks, timeout=1800)

            def uv_sync() -> Callable[[], float]:
                python = venv()
                cmd = [s.uv, "pip", "sync", "--quiet", "--python", str(python), f"pylock.{LABEL}.toml"]
                return lambda: run(cmd, env, locks, timeout=1800)

            def pip_gpu_sync() -> Callable[[], float]:
                python = venv()
                cmd = [*PIP_GPU, "sync", "--quiet", "--python", str(python), "--installer", "uv", *REAL_HOST]
                return lambda: run(cmd, env, locks, timeout=1800)

            base, cand = interleaved(uv_sync, pip_gpu_sync, rounds)
            rows.append(ratio_row("11b", what_sync, base, cand, 1.10))
        except NotMeasurable as error:
            rows.append(Row("11b", what_sync, target="<= 1.10x", error=str(error)))
        else:
            rows.extend(_real_doctor_and_check(s, env, locks, venv(), max(3, rounds)))
    return rows


def row_real_static_mirror(s: Setting, rounds: int) -> Row:
    """4c. Row 4b at real size (issue 25): the real torch 2.14.1+cu130 wheel set (about 3 GB)
    from a static-file mirror without PEP 658 metadata, pip engine, a fresh venv and a cold pip
    cache each round, against the plain pip one-liner on that mirror's variant index."""
    what = (
        "real size, pip, static mirror without PEP 658 metadata: `pip-gpu install torch==2.14.1` vs "
        "`pip install torch==2.14.1+cu130 --index-url <mirror>/cu130`, fresh venv, cold cache"
    )
    missing = real_wheel_available()
    if missing is not None:
        return Row("4c", what, target="<= 1.10x", skipped=missing)
    from support.realwheels import LABEL, TORCH, real_index

    with real_index() as real:
        env = dict(s.env, PIP_INDEX_URL=real.static_default_url)
        env["PIP_GPU_PYTORCH_INDEX"] = real.static_pytorch_url
        env.pop("UV_DEFAULT_INDEX", None)
        done: list[Path] = []

        def fresh() -> tuple[Path, dict[str, str]]:
            for folder in done:  # about 5.5 GB installed and 3 GB cached a round
                shutil.rmtree(folder, ignore_errors=True)
            done.clear()
            folder = s.fresh("real-static")
            done.append(folder)
            shutil.copytree(s.pip_template, folder / "venv", symlinks=True)
            return venv_python(folder / "venv"), dict(env, PIP_CACHE_DIR=str(folder / "pip-cache"))

        def plain_pip() -> Callable[[], float]:
            python, round_env = fresh()
            cmd = [str(python), "-m", "pip", "install", "--quiet", f"torch=={TORCH}+{LABEL}"]
            cmd += ["--index-url", f"{real.static_pytorch_url}/{LABEL}"]
            return lambda: run(cmd, round_env, python.parent, timeout=1800)

        def pip_gpu_install() -> Callable[[], float]:
            python, round_env = fresh()
            cmd = [*PIP_GPU, "install", "--quiet", f"torch=={TORCH}", "--python", str(python)]
            cmd += ["--installer", "pip", *REAL_HOST, "--variant", LABEL]
            return lambda: run(cmd, round_env, python.parent.parent.parent, timeout=1800)

        try:
            base, cand = interleaved(plain_pip, pip_gpu_install, rounds)
        except NotMeasurable as error:
            return Row("4c", what, target="<= 1.10x", error=str(error))
        finally:
            for folder in done:
                shutil.rmtree(folder, ignore_errors=True)
    return ratio_row("4c", what, base, cand, 1.10)


def _real_doctor_and_check(
    s: Setting, env: dict[str, str], locks: Path, python: Path, rounds: int
) -> list[Row]:
    """11c/11d. ``doctor`` and ``check`` on the synced real environment (5.3 GB): the default
    (every file's presence and size, the build's files by sha256) against ``--verify-files``
    (every file's sha256)."""
    run(
        [*PIP_GPU, "sync", "--quiet", "--python", str(python), "--installer", "uv", *REAL_HOST],
        env,
        locks,
        1800,
    )
    rows: list[Row] = []
    for number, command in (("11c", "doctor"), ("11d", "check")):
        what = (
            f"real size: `pip-gpu {command}` (default) vs `pip-gpu {command} --verify-files` on the "
            "synced torch 2.14.1+cu130 environment"
        )
        cmd = [*PIP_GPU, command, "--python", str(python), *REAL_HOST]
        cpu: dict[str, list[float]] = {"full": [], "fast": []}

        def timed(argv: list[str], into: list[float]) -> Step:
            # the CPU time of the command and its children beside the wall time: on a loaded
            # machine the wall time partly measures the queue
            def step() -> Callable[[], float]:
                def go() -> float:
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    wall = run(argv, env, locks)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    into.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                    return wall

                return go

            return step

        try:
            full, fast = interleaved(
                timed([*cmd, "--verify-files"], cpu["full"]), timed(cmd, cpu["fast"]), rounds
            )
        except NotMeasurable as error:
            rows.append(Row(number, what, target="default <= 3 s", error=str(error)))
            continue
        cpu_fast = statistics.median(cpu["fast"][1:] or cpu["fast"])  # the warm-up round left out
        cpu_full = statistics.median(cpu["full"][1:] or cpu["full"])
        rows.append(
            Row(
                number,
                what,
                cell(full),
                cell(fast),
                f"default {fast.median:.1f} s (CPU {cpu_fast:.1f} s), --verify-files {full.median:.1f} s "
                f"(CPU {cpu_full:.1f} s)",
                "default <= 3 s",
                "met" if fast.median <= 3 else f"MISSED by {fast.median - 3:.1f} s",
            )
        )
    return rows


# --- 8. correctness ------------------------------------------------------------------------

# uv's `--torch-backend=auto` (crates/uv-torch/src/backend.rs, LINUX_CUDA_DRIVERS): with a CUDA
# driver it offers every CUDA index whose minimum driver the host meets, newest CUDA first,
# then cpu, and takes the torch family from the first of them. Driver only: the GPU's
# architecture is never read.
UV_LINUX_MIN_DRIVER = (
    ("cu132", "580"),
    ("cu130", "580"),
    ("cu129", "525.60.13"),
    ("cu128", "525.60.13"),
    ("cu126", "525.60.13"),
    ("cu125", "525.60.13"),
    ("cu124", "525.60.13"),
    ("cu123", "525.60.13"),
    ("cu122", "525.60.13"),
    ("cu121", "525.60.13"),
    ("cu120", "525.60.13"),
    ("cu118", "450.80.02"),
    ("cu117", "450.80.02"),
    ("cu116", "450.80.02"),
    ("cu115", "450.80.02"),
    ("cu114", "450.80.02"),
    ("cu113", "450.80.02"),
    ("cu112", "450.80.02"),
    ("cu111", "450.80.02"),
    ("cu110", "450.36.06"),
    ("cu102", "440.33"),
)

# (name, compute capability, oldest driver that supports the board, newest branch that does)
BOARDS = (
    ("K80", (3, 7), "450", "470.999"),
    ("GTX 750", (5, 0), "450", "580.999"),
    ("GTX 1080", (6, 1), "450", "580.999"),
    ("V100", (7, 0), "450", "580.999"),
    ("T4", (7, 5), "450", "999"),
    ("A100", (8, 0), "450", "999"),
    ("A10", (8, 6), "460", "999"),
    ("RTX 4090", (8, 9), "520", "999"),
    ("H100", (9, 0), "520", "999"),
    ("B200", (10, 0), "570", "999"),
    ("RTX 5090", (12, 0), "570", "999"),
)
DRIVERS = (
    "450.80.02",
    "470.82.01",
    "525.60.13",
    "535.104.05",
    "550.54.15",
    "560.35.03",
    "570.124.06",
    "575.57.08",
    "580.65.06",
)
MIXES = (("V100", "RTX 5090"), ("A100", "H100"), ("GTX 1080", "A100"), ("T4", "B200"))
REQUESTS = ("torch", "torch==2.5.1", "torch==2.7.1")


def uv_auto_choice(request, host, knowledge):  # type: ignore[no-untyped-def]
    """(release, build) uv-auto would install, or None: first index in uv's order holding the
    newest admitted release for the platform (the kindest reading: uv falls through an index
    that lacks the pinned version)."""
    from packaging.version import Version

    order = [
        v for v, minimum in UV_LINUX_MIN_DRIVER if host.driver_version and _ge(host.driver_version, minimum)
    ]
    order.append("cpu")
    admitted = [
        r
        for r in knowledge.releases
        if request.admits(r, newest=r is knowledge.releases[0])[0] and host.python_version in r.python
    ]
    admitted.sort(key=lambda r: Version(r.torch), reverse=True)
    for variant in order:
        for release in admitted:
            for build in release.builds:
                if build.variant == variant and build.platform == host.platform_tag:
                    return release, build
    return None


def _ge(a: str, b: str) -> bool:
    from packaging.version import Version

    return Version(a) >= Version(b)


def row_correctness() -> list[Row]:
    from packaging.requirements import Requirement
    from packaging.version import Version

    from pip_gpu.decide.rules import build_runs_on, decide, request_from_requirements
    from pip_gpu.host import HostProfile, NvidiaGpu
    from pip_gpu.knowledge import load_knowledge

    knowledge = load_knowledge()
    boards = {name: (cc, low, high) for name, cc, low, high in BOARDS}
    hosts = []
    for driver in DRIVERS:
        combos = [(name,) for name in boards] + list(MIXES)
        for combo in combos:
            if all(Version(boards[b][1]) <= Version(driver) <= Version(boards[b][2]) for b in combo):
                gpus_ = tuple(
                    NvidiaGpu(index=i, name=b, compute_capability=boards[b][0], source="bench")
                    for i, b in enumerate(combo)
                )
                hosts.append(
                    (
                        f"{driver} + {' & '.join(combo)}",
                        HostProfile(
                            os="linux",
                            arch="x86_64",
                            python_version="3.11",
                            driver_version=driver,
                            nvidia_gpus=gpus_,
                        ),
                    )
                )
    rows = []
    for text in REQUESTS:
        request = request_from_requirements([Requirement(text)], knowledge)
        total = pg_runs = pg_refused = uv_runs = uv_none = 0
        pg_wrong: list[str] = []
        differs = 0
        for label, host in hosts:
            total += 1
            decision = decide(request, host, knowledge)
            if decision.ok and decision.build is not None:
                if build_runs_on(decision.build, host, knowledge)[0]:
                    pg_runs += 1
                else:
                    pg_wrong.append(label)
            else:
                pg_refused += 1
            uv = uv_auto_choice(request, host, knowledge)
            if uv is None:
                uv_none += 1
            elif uv[1].cuda is not None and build_runs_on(uv[1], host, knowledge)[0]:
                uv_runs += 1
            if uv is not None and decision.build is not None and uv[1].variant != decision.build.variant:
                differs += 1
        detail = (
            f"runs on host: pip-gpu {pg_runs}/{total}, uv-auto {uv_runs}/{total}; "
            f"pip-gpu refused {pg_refused} (no build runs, exit 2), installed a non-running build "
            f"{len(pg_wrong)}; uv-auto found nothing {uv_none}; choices differ on {differs}"
        )
        rows.append(
            Row(
                "8",
                f"correctness, `{text}` over {total} Linux hosts (9 drivers x 11 GPUs + 4 mixes)",
                f"uv-auto: {uv_runs}/{total}",
                f"pip-gpu: {pg_runs}/{total}",
                detail,
                "pip-gpu never installs a build that does not run",
                "met" if not pg_wrong else f"MISSED on {', '.join(pg_wrong[:3])}",
            )
        )
    return rows


# --------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument("--rounds", type=int, default=15, help="rounds for the cheap commands (1, 2, 7a)")
    parser.add_argument("--install-rounds", type=int, default=5, help="rounds for 3-6 and 7b")
    parser.add_argument(
        "--real-rounds", type=int, default=2, help="rounds for the real-size rows 4c, 11a and 11b (3 GB each)"
    )
    parser.add_argument("--only", default="", help="comma-separated row numbers to run (default: all)")
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}

    def wanted(n: str) -> bool:
        return not only or n in only

    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pip-gpu-bench-") as tmp:
        try:
            setting, server_cm = make_setting(Path(tmp))
        except (NotMeasurable, OSError) as error:
            print(f"bench: could not set up: {error}", file=sys.stderr)
            return 1
        except BaseException as error:  # pytest.fail() from build_fake_nvml
            if isinstance(error, KeyboardInterrupt):
                raise
            print(f"bench: could not set up: {error}", file=sys.stderr)
            return 1
        try:
            steps: list[tuple[str, Callable[[], list[Row]]]] = [
                ("1", lambda: row_shims(setting, args.rounds)),
                ("1e", lambda: [row_shim_install(setting, args.install_rounds, "pip")]),
                ("1f", lambda: [row_shim_install(setting, args.install_rounds, "uv")]),
                ("1g", lambda: [row_shim_install(setting, args.install_rounds, "pip", dry_run=True)]),
                ("2", lambda: row_decision(setting, args.rounds)),
                ("3", lambda: [row_install(setting, args.install_rounds, "uv")]),
                ("4", lambda: [row_install(setting, args.install_rounds, "pip")]),
                ("4b", lambda: [row_install_static_mirror(setting, args.install_rounds)]),
                ("5", lambda: [row_lock(setting, args.install_rounds)]),
                ("5b", lambda: [row_lock_slow_index(setting, args.install_rounds)]),
                ("6", lambda: [row_sync(setting, args.install_rounds)]),
                ("7", lambda: row_scale(setting, max(5, args.rounds // 2), max(3, args.install_rounds - 2))),
                ("8", row_correctness),
                ("9", lambda: [row_unanswered_index(setting, max(3, args.rounds // 3))]),
                ("10", lambda: row_memory(setting, 3)),
                ("11", lambda: row_real(setting, args.real_rounds)),
                ("4c", lambda: [row_real_static_mirror(setting, args.real_rounds)]),
                ("12", lambda: row_project(setting, args.install_rounds)),
            ]
            if "7c" in only:  # optional: asked for by number only
                steps.append(("7c", lambda: [row_fleet(setting, max(3, args.rounds // 5))]))
            for number, step in steps:
                if not wanted(number):
                    continue
                t0 = time.perf_counter()
                got = step()
                rows.extend(got)
                print(f"bench: row {number} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        finally:
            server_cm.__exit__(None, None, None)  # type: ignore[attr-defined]
    total = time.perf_counter() - started
    header = [
        f"pip-gpu bench: Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.rounds} rounds for rows 1-2 ({max(5, args.rounds // 2)} for 7a), "
        f"{args.install_rounds} for rows 3-6 ({max(3, args.install_rounds - 2)} for 7b), after one warm-up "
        f"round; {total:.0f} s in all.",
        "Absolute times are this machine's only; the ratios are the point.",
    ]
    table = render(rows, header)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table, encoding="utf-8")
    for r in rows:
        if r.skipped is not None:
            print(f"bench: row {r.number} not run: {r.skipped}", file=sys.stderr)
    failed = [r for r in rows if r.error is not None]
    for r in failed:
        print(f"bench: row {r.number} not measured:\n{r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
