"""The base images docker-compose.yml and the Dockerfile need, on any machine:
a local image of that name, else one pulled from its registry, else a local
stand-in built from Debian's packages (deploy/standins/).

    python -m deploy.images            # make sure every base image is there
    python -m deploy.images --rebuild  # rebuild the stand-ins even if current

A stand-in is a root filesystem made by mmdebstrap and imported into Docker,
then finished by its Dockerfile. It trusts the host's extra CA certificates
(/usr/local/share/ca-certificates), so that pip inside `docker build` reaches
the package index through an intercepting proxy the host trusts. Each carries
the label chat.standin=<name>:<hash of its definition>, so an outdated one is
rebuilt and a real image is never mistaken for one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "deploy" / "standins"
LABEL = "chat.standin"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PULL_TIMEOUT = 300
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
ROLLING_SUITES = {"sid", "unstable", "experimental"}  # no -updates, no -security
# Left out of the stand-ins' root filesystems: nothing in a container reads them.
EXCLUDED_PATHS = [
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
]


def say(text: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- what is needed


def required_images() -> list[str]:
    """Images compose runs as they are, and the Dockerfile's base."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    images = [s["image"] for s in compose["services"].values() if "build" not in s]
    dockerfile = (ROOT / "Dockerfile").read_text()
    images += re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    return sorted(set(images))


def standins() -> dict[str, dict]:
    """{image: definition (with its `name`)} from standins.toml."""
    table = tomllib.loads((STANDINS / "standins.toml").read_text())
    return {spec["image"]: {**spec, "name": name} for name, spec in table.items()}


def host_ca_certificates() -> list[Path]:
    return sorted(HOST_CA_DIR.glob("**/*.crt")) if HOST_CA_DIR.is_dir() else []


def definition_hash(spec: dict) -> str:
    """Changes whenever what the stand-in would contain changes: its own
    definition and files, the other stand-ins sharing its root filesystem, and
    the host's CA certificates."""
    digest = hashlib.sha256()
    for member in suite_group(spec):
        digest.update(json.dumps(member, sort_keys=True).encode())
    for path in sorted((STANDINS / spec["name"]).rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    for cert in host_ca_certificates():
        digest.update(cert.read_bytes())
    return digest.hexdigest()[:16]


def suite_group(spec: dict) -> list[dict]:
    """The stand-ins built on one root filesystem: those of the same suite
    (one mmdebstrap run each suite, with all of their packages)."""
    return sorted(
        (s for s in standins().values() if s["suite"] == spec["suite"]), key=lambda s: s["name"]
    )


# ---------------------------------------------------------------- docker


def image_labels(image: str) -> dict | None:
    """The image's labels ({} for none), or None when there is no such image."""
    result = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image])
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip() or "null") or {}


def pull(image: str) -> bool:
    try:
        result = run(["docker", "pull", image], timeout=PULL_TIMEOUT)
    except subprocess.TimeoutExpired:
        say(f"{image}: no answer from its registry within {PULL_TIMEOUT}s")
        return False
    if result.returncode != 0:
        say(f"{image}: cannot pull ({result.stderr.strip().splitlines()[-1:]})")
    return result.returncode == 0


# ---------------------------------------------------------------- stand-ins


def debian_mirrors() -> tuple[str, str]:
    """The host's Debian mirror and security mirror, from its apt sources."""
    text = ""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            try:
                text += path.read_text() + "\n"
            except OSError:
                pass
    uris = re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M)
    debian = [u.rstrip("/") for u in uris if re.search(r"/debian$", u.rstrip("/"))]
    security = [u.rstrip("/") for u in uris if u.rstrip("/").endswith("-security")]
    return (debian or [DEFAULT_MIRROR])[0], (security or [DEFAULT_SECURITY])[0]


def sources(suite: str) -> list[str]:
    mirror, security = debian_mirrors()
    lines = [f"deb {mirror} {suite} main"]
    if suite not in ROLLING_SUITES:
        lines += [f"deb {mirror} {suite}-updates main", f"deb {security} {suite}-security main"]
    return lines


def mmdebstrap_argv(suite: str, packages: list[str]) -> list[str]:
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(['ca-certificates', *packages])}",
        # This workplace's clock runs ahead of the mirrors' snapshots: their
        # Release files would count as expired. They are still signed.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED_PATHS),
    ]
    if host_ca_certificates():
        argv += [
            f"--customize-hook=copy-in {HOST_CA_DIR} /usr/local/share",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    return [*argv, suite, "-", *sources(suite)]


def build_standins(suite: str, group: list[dict]) -> None:
    """One root filesystem for the suite (mmdebstrap | docker import), then
    the Dockerfile of each stand-in in `group` on top of it."""
    everyone = suite_group(group[0])  # the root filesystem has all of their packages
    packages = sorted({package for spec in everyone for package in spec["packages"]})
    rootfs = f"chat-standin/{suite}:rootfs"
    started = time.monotonic()
    with tempfile.TemporaryFile() as log:
        debootstrap = subprocess.Popen(
            mmdebstrap_argv(suite, packages), stdout=subprocess.PIPE, stderr=log
        )
        imported = run(["docker", "import", "-", rootfs], stdin=debootstrap.stdout)
        debootstrap.stdout.close()
        if debootstrap.wait() != 0 or imported.returncode != 0:
            run(["docker", "image", "rm", rootfs])  # whatever half an archive made
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(
                f"{suite} root filesystem: mmdebstrap failed:\n{tail}{imported.stderr}"
            )
    say(f"{suite} root filesystem ({', '.join(packages)}) in {time.monotonic() - started:.0f}s")
    try:
        for spec in group:
            built = run(
                [
                    "docker",
                    "build",
                    "--quiet",
                    "--build-arg",
                    f"ROOTFS={rootfs}",
                    "--label",
                    f"{LABEL}={spec['name']}:{definition_hash(spec)}",
                    "--tag",
                    spec["image"],
                    str(STANDINS / spec["name"]),
                ]
            )
            if built.returncode != 0:
                raise RuntimeError(f"stand-in {spec['name']}: docker build failed:\n{built.stderr}")
            say(f"built stand-in {spec['image']}")
    finally:
        # The root filesystem lives on as the stand-ins' first layer; only its tag goes.
        run(["docker", "image", "rm", rootfs])


def ensure_base_images(*, rebuild: bool = False) -> dict[str, str]:
    """Make every required image available; returns {image: where it came from}."""
    known = standins()
    origin: dict[str, str] = {}
    to_build = []
    for image in required_images():
        spec = known.get(image)
        labels = image_labels(image)
        standin = labels.get(LABEL) if labels is not None else None
        if labels is not None and standin is None:
            origin[image] = "local image"
        elif not (rebuild and spec) and pull(image):
            origin[image] = "pulled"
        elif spec is None:
            raise RuntimeError(
                f"{image} is not here, cannot be pulled, and has no stand-in: "
                f"add one to {STANDINS / 'standins.toml'}"
            )
        elif not rebuild and standin == f"{spec['name']}:{definition_hash(spec)}":
            origin[image] = "stand-in (current)"
        else:
            to_build.append(spec)
            origin[image] = "stand-in (built now)"
    suites = {spec["suite"] for spec in to_build}
    if suites and shutil.which("mmdebstrap") is None:
        raise RuntimeError(
            f"{', '.join(s['image'] for s in to_build)}: not here and cannot be pulled; the "
            "stand-ins need mmdebstrap (Debian: apt-get install mmdebstrap)"
        )
    if suites:
        say(f"building stand-ins for {', '.join(s['image'] for s in to_build)}")
        with ThreadPoolExecutor(len(suites)) as pool:
            groups = [
                pool.submit(build_standins, suite, [s for s in to_build if s["suite"] == suite])
                for suite in sorted(suites)
            ]
            for future in groups:
                future.result()
    for image, where in origin.items():
        say(f"{image}: {where}")
    return origin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="rebuild the stand-ins")
    ensure_base_images(rebuild=parser.parse_args().rebuild)


if __name__ == "__main__":
    main()
