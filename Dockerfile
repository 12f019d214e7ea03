# syntax=docker/dockerfile:1
# Vitrine: every binary in one small image (docs/OPERATIONS.md).
#
#   docker build -t vitrine .
#   docker run -p 8080:8080 -v $PWD/models:/models vitrine
#
# Stages: `chef` installs cargo-chef; `plan` reduces the workspace to a
# dependency recipe; `deps` compiles only the dependencies from that recipe
# (a layer that stays cached until Cargo.toml/Cargo.lock change); `build`
# compiles the workspace's own code; the runtime stage copies the binaries
# into debian-slim as a non-root user.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS deps
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json

FROM deps AS build
COPY . .
RUN cargo build --release --locked \
      -p vitrine-server -p vitrine-train -p vitrine-quantize -p vitrine-loadtest -p vitrine-core --bins

FROM debian:bookworm-slim AS runtime
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin vitrine \
    && mkdir -p /models /etc/vitrine \
    && chown vitrine:vitrine /models
COPY --from=build /src/target/release/vitrine-server /usr/local/bin/vitrine-server
COPY --from=build /src/target/release/vitrine-train /usr/local/bin/vitrine-train
COPY --from=build /src/target/release/vitrine-quantize /usr/local/bin/vitrine-quantize
COPY --from=build /src/target/release/vitrine-loadtest /usr/local/bin/vitrine-loadtest
COPY --from=build /src/target/release/vitrine-inspect /usr/local/bin/vitrine-inspect
COPY configs/vitrine.toml /etc/vitrine/vitrine.toml
USER 10001:10001
ENV VITRINE_LISTEN=0.0.0.0:8080 \
    VITRINE_MODELS_DIR=/models \
    VITRINE_LOG_FORMAT=json
VOLUME ["/models"]
EXPOSE 8080
# No curl in the slim image: bash's /dev/tcp asks /healthz directly.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["vitrine-server"]
CMD ["--config", "/etc/vitrine/vitrine.toml"]
