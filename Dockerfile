# Multi-stage build of the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin rwsplit

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin rwsplit
COPY --from=build /src/target/release/rwsplit /usr/local/bin/rwsplit
COPY config/rwsplit.toml /etc/rwsplit/rwsplit.toml
USER rwsplit
EXPOSE 6033
ENTRYPOINT ["/usr/local/bin/rwsplit"]
CMD ["--config", "/etc/rwsplit/rwsplit.toml"]
