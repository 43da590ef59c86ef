# Flagpole: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t flagpole .
#   docker run -p 8080:8080 -v flagpole-data:/data -e FLAGPOLE_PUBLIC_URL=http://localhost:8080 flagpole

FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Dependencies first, so that they stay cached while only the code changes.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

COPY src src
COPY templates templates
COPY static static
COPY migrations migrations
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && strip target/release/flagpole

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flagpole \
 && useradd --system --uid 10001 --gid flagpole --home-dir /data --shell /usr/sbin/nologin flagpole \
 && mkdir -p /data \
 && chown flagpole:flagpole /data
COPY --from=builder /build/target/release/flagpole /usr/local/bin/flagpole

ENV FLAGPOLE_BIND=0.0.0.0:8080 \
    FLAGPOLE_DATA_DIR=/data \
    DATABASE_URL=sqlite:///data/flagpole.db \
    RUST_LOG=info
USER flagpole
WORKDIR /data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["flagpole"]
CMD ["serve"]
