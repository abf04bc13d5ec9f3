# pgguard container image: a Debian 12 build stage, then a runtime stage with only the
# shared libraries pgguard links (libuv, libpq, OpenSSL, inih), running as an unprivileged user.
#   docker build -t pgguard .
#   docker run --rm -p 6432:6432 -p 9930:9930 pgguard \
#     --listen 0.0.0.0:6432 --admin-listen 0.0.0.0:9930 --upstream db.example.internal:5432
# In a Kubernetes pod the sidecar reads -c /etc/pgguard/pgguard.ini (deploy/kubernetes).

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libuv1-dev libpq-dev libssl-dev libinih-dev \
      libpg-query-dev libprotobuf-c-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the pgguard target is built from; tests/ and bench/ stay out of the image.
COPY CMakeLists.txt ./
COPY protocol/ protocol/
COPY guard/ guard/
COPY proxy/ proxy/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build --target pgguard -j"$(nproc)" \
 && strip build/pgguard \
 && build/pgguard --version

FROM debian:12-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libpq5 libssl3 libinih1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pgguard \
 && useradd --system --uid 10001 --gid pgguard --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pgguard
COPY --from=build /src/build/pgguard /usr/local/bin/pgguard
# A numeric user, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 10001:10001
# 6432: PostgreSQL clients; 9930: the admin listener (/metrics /healthz /readyz /drift).
# Both listen on loopback unless configured otherwise (listen, admin_listen).
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/pgguard"]
CMD ["-c", "/etc/pgguard/pgguard.ini"]
