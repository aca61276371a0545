# causeway container image (used by docker-compose.yml).
#
#   docker build -t causeway .
#   docker run -p 6033:6033 -p 6080:6080 \
#     -v $PWD/conf/causeway.docker.toml:/etc/causeway/causeway.toml:ro causeway
#
# Stage 1 builds the release binary; stage 2 is a slim Debian runtime that
# runs it as an unprivileged user. The config is expected at
# /etc/causeway/causeway.toml (mount your own; the compose file mounts
# conf/causeway.docker.toml there).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin causeway \
 && install -m 0755 target/release/causeway /usr/local/bin/causeway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin causeway
COPY --from=build /usr/local/bin/causeway /usr/local/bin/causeway
COPY conf/causeway.docker.toml /etc/causeway/causeway.toml
USER causeway
EXPOSE 6033 6080
ENTRYPOINT ["/usr/local/bin/causeway"]
CMD ["--config", "/etc/causeway/causeway.toml"]
