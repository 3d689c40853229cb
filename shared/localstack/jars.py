"""The Kafka broker's jars: the official artifacts from Maven Central, resolved with Maven
on first use into a cache that outlives the work tree and is shared by every checkout.

Environment: ``INSTALLMENTS_STACK_CACHE`` (cache root, ``~/.cache/card-installments``),
``INSTALLMENTS_STACK_KAFKA_VERSION`` (:data:`DEFAULT_KAFKA_VERSION`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from shared.localstack.common import ASSETS, env, locked, log, run

DEFAULT_KAFKA_VERSION = "4.1.2"


def kafka_version() -> str:
    return env("KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def cache_dir() -> Path:
    """Jar cache root, shared by work trees and kept between runs."""
    return Path(env("CACHE", str(Path.home() / ".cache" / "card-installments"))).resolve()


def kafka_libs() -> Path:
    """Folder with the broker's jars, resolved with Maven on first use (then cached)."""
    home = cache_dir() / f"kafka-{kafka_version()}"
    libs, tmp = home / "libs", home / "libs.tmp"
    with locked(home / ".lock"):
        if (libs / ".complete").exists():
            return libs
        if not shutil.which("mvn"):
            raise RuntimeError("Maven (mvn) is needed to fetch Kafka: apt-get install -y maven")
        log(f"kafka: fetching kafka_2.13 {kafka_version()} and its dependencies with Maven")
        started = time.monotonic()
        shutil.copy(ASSETS / "pom.xml", home / "pom.xml")
        shutil.rmtree(tmp, ignore_errors=True)
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(home / "pom.xml"),
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                f"-Dkafka.version={kafka_version()}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            "mvn copy-dependencies",
        )
        jars = list(tmp.glob("*.jar"))
        size = sum(j.stat().st_size for j in jars) / 2**20
        (tmp / ".complete").touch()
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        log(f"kafka: {len(jars)} jars ({size:.0f} MiB) in {time.monotonic() - started:.1f}s")
    return libs
