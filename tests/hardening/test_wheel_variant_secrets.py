"""A variant index behind HTTP Basic auth (PEP 825 wheel variants, issue 26): the credentials,
from the variant index URL's userinfo or from the netrc file, reach the index (pages,
variants.json, the wheels) and nothing else: never an installer's argv, never pip-gpu's
output, never the lock."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from support.cli import PLUGIN, cmdlines_with, pip_gpu
from support.index import fixture_env, make_venv, site_packages
from support.variant_index import PLAIN_PROJECT, build_variant_index, serve_with_basic_auth

PASCAL = ("--driver", "580.65.06", "--compute-capability", "6.1")
B200 = ("--driver", "580.65.06", "--compute-capability", "10.0")


def _label(python: Path) -> str:
    text = (site_packages(python) / "torch" / "version.py").read_text()
    return text.split('variant_label = "')[1].split('"')[0]


def test_a_variant_index_behind_basic_auth_from_the_url_or_netrc(tmp_path: Path) -> None:
    secret = f"vi-s3cr3t-{os.getpid()}"
    root = tmp_path / "index"
    build_variant_index(root)
    with serve_with_basic_auth(root, "alice", secret) as (server, seen):
        env = fixture_env(server, tmp_path / "uv-cache")
        env.update(PYTHONPATH=str(PLUGIN), XDG_CACHE_HOME=str(tmp_path / "cache"))
        env["PIP_INDEX_URL"] = env["UV_DEFAULT_INDEX"] = server.pypi_url
        index = server.base_url + "/whl/variant"
        with_userinfo = index.replace("http://", f"http://alice:{secret}@")
        python = make_venv(tmp_path / "venv", with_pip=False)

        # install, the index URL with userinfo in the environment: the installer waits on the
        # rest (tinyutil, held 3 s) while every process's argv is read
        server.fail(f"/pypi/simple/{PLAIN_PROJECT}/", "hang", hang_s=3)
        process = subprocess.Popen(
            [sys.executable, "-m", "pip_gpu", "install", "torch", PLAIN_PROJECT,
             "--python", str(python), *PASCAL],
            env={**env, "PIP_GPU_VARIANT_INDEX": with_userinfo},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        in_argv: list[str] = []
        deadline = time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            in_argv += cmdlines_with(secret)
            if server.contacted(f"/pypi/simple/{PLAIN_PROJECT}/"):
                server.clear_failures()
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert _label(python) == "cu126" and server.contacted(f"/pypi/simple/{PLAIN_PROJECT}/")
        assert not in_argv, in_argv
        assert secret not in stdout + stderr
        expected = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
        assert len(seen) >= 3 and set(seen) == {expected}  # the page, variants.json, the wheel

        # lock: the URLs without the credentials
        project = tmp_path / "project"
        project.mkdir()
        locked = pip_gpu(
            "lock", "torch", *PASCAL, env={**env, "PIP_GPU_VARIANT_INDEX": with_userinfo}, cwd=project
        )
        assert locked.returncode == 0, locked.stderr
        text = (project / "pylock.toml").read_text()
        assert secret not in text + locked.stdout + locked.stderr and "alice" not in text
        assert f'url = "{index}/torch/torch-2.9.0-variants.json"' in text

        # sync and explain with the credentials in a netrc file only
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login alice password {secret}\n")
        netrc.chmod(0o600)
        with_netrc = {**env, "NETRC": str(netrc)}
        synced = pip_gpu("sync", "--python", str(python), *B200, env=with_netrc, cwd=project)
        assert synced.returncode == 0, synced.stderr
        assert _label(python) == "cu130" and secret not in synced.stdout + synced.stderr
        explained = pip_gpu("explain", "--json", "--variant-index", index, *PASCAL, env=with_netrc)
        assert json.loads(explained.stdout)["variant_label"] == "cu126", explained.stderr

        # and without any: the index's answer, in one line
        refused = pip_gpu("explain", "--variant-index", index, *PASCAL, env=env)
        assert refused.returncode != 0 and "answered HTTP 401" in refused.stderr
