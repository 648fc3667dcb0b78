#!/usr/bin/env python3
"""Writes COUNT realistic multi-stage Dockerfiles under OUT for bench/dockerfile.

Each file is a plausible service build: global ARGs used in FROM, build
stages on $BUILDPLATFORM, COPY --from (stages and images), RUN --mount cache
and from= mounts, heredocs, comments inside continuations, ONBUILD in
internal bases, digest pins, several registries, and the odd test stage that
the target never reaches. Every file is valid (basewatch scans all of them
without error), and the output is the same for the same --seed.

  gen_dockerfiles.py --count 5000 --out /tmp/bw-bench-dockerfiles
"""
import argparse
import hashlib
import os
import random

REGISTRIES = ["", "", "", "docker.io/library/", "ghcr.io/acme/", "quay.io/acme/", "gcr.io/distroless/",
              "registry.example.com:5000/platform/", "public.ecr.aws/docker/library/", "mcr.microsoft.com/"]


def digest(rng):
    return "sha256:" + hashlib.sha256(str(rng.random()).encode()).hexdigest()


def filler_run(rng, escape="\\"):
    """A RUN with continuations, and sometimes a comment line inside it."""
    pkgs = rng.sample(["curl", "git", "make", "gcc", "libc6-dev", "ca-certificates", "tzdata", "jq", "unzip",
                       "openssl", "pkg-config", "libssl-dev", "xz-utils", "bash"], rng.randint(2, 6))
    lines = ["RUN apt-get update " + escape, "    && apt-get install -y --no-install-recommends " + escape]
    for p in pkgs:
        lines.append("        " + p + " " + escape)
        if rng.random() < 0.15:
            lines.append("    # pinned for the build, see ticket " + str(rng.randint(100, 9999)))
    lines.append("    && rm -rf /var/lib/apt/lists/*")
    return lines


def heredoc(rng):
    kind = rng.randint(0, 2)
    if kind == 0:
        return ["RUN <<EOF", "set -eux", "echo 'FROM this is not an instruction' > /etc/motd",
                "mkdir -p /app/data", "chown -R 65534:65534 /app", "EOF"]
    if kind == 1:
        return ["COPY <<-'CONF' /etc/app/app.conf", "\tlisten = 0.0.0.0:8080", "\tlog_level = ${LOG_LEVEL}",
                "\tFROM = not-an-image", "\tCONF"]
    return ["RUN <<SH1 bash && <<SH2 sh", "echo first", "SH1", "echo second", "SH2"]


def go_service(rng, i):
    out = []
    if rng.random() < 0.5:
        out.append("# syntax=docker/dockerfile:1.%d" % rng.randint(4, 10))
    out += ["# Service %d: a Go API" % i, "", "ARG GO_VERSION=1.%d" % rng.randint(20, 23),
            "ARG ALPINE_VERSION=3.%d" % rng.randint(18, 20), "ARG XX=1.%d.0" % rng.randint(3, 5), ""]
    out += ["FROM --platform=$BUILDPLATFORM tonistiigi/xx:${XX} AS xx", "",
            "FROM --platform=$BUILDPLATFORM %sgolang:${GO_VERSION}-alpine AS build" % rng.choice(["", "docker.io/library/"]),
            "COPY --from=xx / /", "ARG TARGETPLATFORM TARGETOS TARGETARCH", "WORKDIR /src", "COPY go.mod go.sum ./",
            "RUN --mount=type=cache,target=/go/pkg/mod \\", "    --mount=type=cache,target=/root/.cache/go-build \\",
            "    go mod download", "COPY . .",
            "RUN --mount=type=cache,target=/go/pkg/mod \\", "    --mount=type=cache,target=/root/.cache/go-build \\",
            "    CGO_ENABLED=0 xx-go build -trimpath -ldflags='-s -w' -o /out/svc%d ./cmd/svc \\" % i,
            "    && xx-verify /out/svc%d" % i, ""]
    if rng.random() < 0.4:
        out += ["FROM build AS test", "RUN --mount=type=cache,target=/root/.cache/go-build go test ./...", ""]
    if rng.random() < 0.3:
        out += ["FROM %sgolangci-lint:v1.6%d AS lint" % (rng.choice(["golangci/", "ghcr.io/acme/"]), rng.randint(0, 2)),
                "RUN --mount=type=bind,target=.,rw golangci-lint run", ""]
    base = rng.choice(["alpine:${ALPINE_VERSION}", "gcr.io/distroless/static-debian12:nonroot",
                       "alpine:${ALPINE_VERSION}@" + digest(rng), "scratch"])
    out += ["FROM %s AS runtime" % base]
    if base.startswith("alpine"):
        out += ["RUN apk add --no-cache ca-certificates tzdata"]
    out += ["COPY --from=build /out/svc%d /usr/local/bin/svc" % i]
    if rng.random() < 0.3:
        out += heredoc(rng)
    out += ["USER 65534:65534", "EXPOSE 8080", 'ENTRYPOINT ["/usr/local/bin/svc"]']
    return out


def node_service(rng, i):
    node = "node:%d-%s" % (rng.choice([18, 20, 22]), rng.choice(["bookworm-slim", "alpine", "bullseye"]))
    out = ["# Service %d: a Node.js web front end" % i, "ARG NODE_IMAGE=%s" % node, "",
           "FROM ${NODE_IMAGE} AS deps", "WORKDIR /app", "COPY package.json package-lock.json ./",
           "RUN --mount=type=cache,target=/root/.npm \\", "    npm ci --omit=dev", "",
           "FROM ${NODE_IMAGE} AS build", "WORKDIR /app",
           "RUN --mount=type=bind,from=deps,source=/app/node_modules,target=/app/node_modules \\",
           "    --mount=type=bind,target=.,rw \\", "    npm run build -- --output-path=/out", ""]
    if rng.random() < 0.5:
        out += heredoc(rng)
    final = rng.choice(["gcr.io/distroless/nodejs%d-debian12" % rng.choice([18, 20, 22]), "${NODE_IMAGE}",
                        "nginx:1.27-alpine", "cgr.dev/chainguard/node:latest@" + digest(rng)])
    out += ["", "FROM %s" % final, "WORKDIR /app", "COPY --from=deps /app/node_modules ./node_modules",
            "COPY --from=build /out ./dist", "ENV NODE_ENV=production", 'CMD ["dist/server.js"]']
    return out


def python_service(rng, i):
    py = "3.%d" % rng.randint(10, 13)
    out = []
    if rng.random() < 0.3:
        out += ["# escape=\\"]
    out += ["# Service %d: a Python worker" % i, "ARG PYTHON=%s" % py,
            "ARG DEBIAN=%s" % rng.choice(["bookworm", "bullseye"]), "",
            "FROM python:${PYTHON}-slim-${DEBIAN} AS builder", "ENV PIP_NO_CACHE_DIR=1",
            "RUN python -m venv /venv"]
    out += filler_run(rng)
    out += ["COPY requirements.txt .",
            "RUN --mount=type=cache,target=/root/.cache/pip \\", "    /venv/bin/pip install -r requirements.txt", ""]
    if rng.random() < 0.5:
        out += ["FROM builder AS tests", "COPY . /src", "RUN /venv/bin/pytest -q /src/tests", ""]
    pin = "@" + digest(rng) if rng.random() < 0.3 else ""
    out += ["FROM python:${PYTHON}-slim-${DEBIAN}%s AS runtime" % pin, "COPY --from=builder /venv /venv",
            "COPY --from=%sbusybox:1.36 /bin/busybox /bin/busybox" % rng.choice(["", "docker.io/library/"]),
            "COPY . /app", "WORKDIR /app", 'CMD ["/venv/bin/python", "-m", "worker"]']
    return out


def java_service(rng, i):
    jdk = rng.choice([17, 21])
    reg = rng.choice(REGISTRIES)
    out = ["# Service %d: a JVM service" % i, "ARG JDK=%d" % jdk, "",
           "from %smaven:3.9-eclipse-temurin-${JDK} as build" % ("" if reg.startswith("gcr.io/distroless") else reg),
           "workdir /build", "copy pom.xml .",
           "run --mount=type=cache,target=/root/.m2 mvn -B -q dependency:go-offline", "copy src ./src",
           "run --mount=type=cache,target=/root/.m2 \\", "    # skip the slow suites here, CI runs them", "    mvn -B -q package -DskipTests", "",
           "FROM eclipse-temurin:${JDK}-jre-jammy AS runtime",
           "COPY --from=build /build/target/*.jar /app/app.jar", "EXPOSE 8080",
           'ENTRYPOINT ["java", "-jar", "/app/app.jar"]']
    return out


def internal_base(rng, i):
    reg = rng.choice(["registry.example.com:5000/platform/", "ghcr.io/acme/", "quay.io/acme/"])
    out = ["# Internal base image %d, built FROM by the services" % i,
           "ARG UBUNTU=%s" % rng.choice(["22.04", "24.04", "jammy", "noble"]), "",
           "FROM --platform=$TARGETPLATFORM %subuntu:${UBUNTU}" % rng.choice(["", "docker.io/library/"])]
    out += filler_run(rng)
    out += ["COPY --from=%shadolint:v2.12.0 /bin/hadolint /usr/local/bin/" % (reg + "tools/"),
            "ONBUILD COPY --from=%sconfigs:2024.%d /etc/acme /etc/acme" % (reg, rng.randint(1, 12)),
            "ONBUILD ARG BUILD_ID", "ONBUILD RUN echo built ${BUILD_ID}", "USER 1000"]
    return out


def rust_service(rng, i):
    out = ["# Service %d: a Rust CLI" % i, "ARG RUST=1.%d" % rng.randint(75, 83), "",
           "FROM --platform=$BUILDPLATFORM rust:${RUST}-slim AS chef",
           "RUN cargo install cargo-chef --locked", "WORKDIR /app", "",
           "FROM chef AS planner", "COPY . .", "RUN cargo chef prepare --recipe-path recipe.json", "",
           "FROM chef AS builder", "COPY --from=planner /app/recipe.json recipe.json",
           "RUN --mount=type=cache,target=/usr/local/cargo/registry \\",
           "    cargo chef cook --release --recipe-path recipe.json", "COPY . .",
           "RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release", "",
           "FROM %sdebian:bookworm-slim" % rng.choice(["", "public.ecr.aws/docker/library/", "mcr.microsoft.com/mirror/docker/library/"]),
           "COPY --from=builder /app/target/release/svc /usr/local/bin/svc",
           "RUN --mount=type=bind,from=%salpine:3.20,source=/etc/ssl,target=/ssl cp -r /ssl /etc/ssl2" % rng.choice(["", "docker.io/library/"]),
           'ENTRYPOINT ["svc"]']
    return out


KINDS = [go_service, go_service, node_service, python_service, java_service, internal_base, rust_service]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    total_lines = total_bytes = 0
    for i in range(args.count):
        lines = rng.choice(KINDS)(rng, i)
        crlf = rng.random() < 0.05
        name = rng.choice(["Dockerfile", "Dockerfile", "Dockerfile", "Dockerfile.prod", "api.Dockerfile"])
        folder = os.path.join(args.out, "team%02d" % (i % 37), "svc%05d" % i)
        os.makedirs(folder, exist_ok=True)
        text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
        with open(os.path.join(folder, name), "w", newline="") as f:
            f.write(text)
        total_lines += len(lines)
        total_bytes += len(text)
    print("%d Dockerfiles, %d lines, %d bytes under %s" % (args.count, total_lines, total_bytes, args.out))


if __name__ == "__main__":
    main()
