# syntax=docker/dockerfile:1.7
#
# kube-changejob operator image: a fully static binary (musl libc linked in) on distroless
# "static", which has CA certificates and a nonroot user but no shell, package manager or libc.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/kube-changejob/kube-changejob:dev .
#
# Multi-arch: the build stage runs on each target platform (under QEMU on a foreign host), so
# the Rust toolchain compiles natively for it; TARGETARCH only picks the musl target triple.
# Slower than cross-compiling, but needs no cross linker or C cross toolchain for ring.

ARG RUST_IMAGE=rust:1-alpine

FROM ${RUST_IMAGE} AS build
ARG TARGETARCH
# musl-dev: headers and static libc for the C parts of ring (rustls' crypto provider).
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# --locked: build exactly the dependency versions in Cargo.lock. Rust links musl targets
# statically by default; +crt-static says so explicitly (with --target it applies to the
# binary only, not to build scripts and proc-macros, which must stay dynamic on the host).
# Cache mounts keep the crates.io downloads and the build directory between builds; the
# binary is copied out because the cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    case "${TARGETARCH:-amd64}" in \
      amd64) triple=x86_64-unknown-linux-musl ;; \
      arm64) triple=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    rustup target add "$triple" >/dev/null 2>&1 || true; \
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple"; \
    cp "target/$triple/release/kube-changejob" /kube-changejob; \
    /kube-changejob --help >/dev/null

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kube-changejob" \
      org.opencontainers.image.description="Kubernetes operator that runs a Job whenever the objects it watches change" \
      org.opencontainers.image.source="https://github.com/kube-changejob/kube-changejob" \
      org.opencontainers.image.url="https://github.com/kube-changejob/kube-changejob" \
      org.opencontainers.image.documentation="https://github.com/kube-changejob/kube-changejob/blob/main/docs/installation.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /kube-changejob /kube-changejob
# The distroless "nonroot" user; the Helm chart runs the pod with the same IDs.
USER 65532:65532
ENTRYPOINT ["/kube-changejob"]
CMD ["run"]
