# syntax=docker/dockerfile:1
# mcpwarden node agent image, for users (needs the public Rust and Debian base images).
#
# Keep in step with `cargo xtask image` (xtask/src/image.rs), which builds the same image
# FROM scratch where no registry is reachable: both ship /usr/local/bin/mcpwarden plus
# exactly the shared libraries `ldd` names and the dynamic loader, with the same
# ENTRYPOINT and CMD.
#
#   docker build -t mcpwarden:dev .
#   docker run --pid=host --network=host --cap-add SYS_ADMIN --cap-add NET_ADMIN \
#     --cap-add SYS_PTRACE --security-opt seccomp=unconfined \
#     --security-opt apparmor=unconfined -v /sys/kernel:/sys/kernel mcpwarden:dev run

# ---- build: the pinned toolchain, installed exactly as `cargo xtask setup` does ----------
FROM rust:1.95-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive \
    LLVM_PREFIX=/usr/lib/llvm-22
# LLVM 22 (bpf-linker links libLLVM.so.22.1 dynamically). Debian bookworm carries
# llvm-22-dev in bookworm-security; apt.llvm.org's bookworm repository has it too.
# zlib, zstd and libxml2 headers: what `llvm-config --system-libs` asks bpf-linker to link.
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev zlib1g-dev libzstd-dev libxml2-dev \
 && rm -rf /var/lib/apt/lists/*
# nightly + rust-src for the eBPF crate (-Z build-std=core --target bpfel-unknown-none);
# bpf-linker 0.13 built against LLVM 22 (its default feature wants LLVM 23).
RUN rustup toolchain install nightly --profile minimal \
 && rustup component add rust-src --toolchain nightly \
 && cargo install bpf-linker --version 0.13.0 --locked \
      --no-default-features --features llvm-22
WORKDIR /src
COPY . .
# The one build mechanism: the eBPF object with nightly, then the release agent embedding it.
RUN cargo xtask build \
 && mkdir -p /out/usr/local/bin \
 && cp target/release/mcpwarden /out/usr/local/bin/mcpwarden \
 && ldd target/release/mcpwarden

# ---- run: slim Debian; the agent needs only libc, libm and libgcc_s (see `ldd` above) -----
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="mcpwarden" \
      org.opencontainers.image.description="eBPF node agent for the Model Context Protocol" \
      org.opencontainers.image.licenses="Apache-2.0"
# bookworm-slim already holds libc6, libgcc-s1 (libc.so.6, libm.so.6, libgcc_s.so.1 and
# /lib64/ld-linux-x86-64.so.2): nothing to install.
COPY --from=build /out/ /
# The directories xtask/src/image.rs creates too (configuration, control socket, agent id
# and spool, a host /proc mount point).
RUN mkdir -p /etc/mcpwarden /run/mcpwarden /var/lib/mcpwarden /host/proc
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["/usr/local/bin/mcpwarden"]
CMD ["run"]
