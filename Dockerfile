# unlearnd + unlearnctl on Debian 12 (CPU LibTorch with OpenBLAS).
#   docker build -t unlearnd .
#   docker run -p 50051:50051 -p 9464:9464 -v unlearnd-data:/var/lib/unlearnd \
#     -v /path/to/model:/models/mine:ro -v /path/to/secrets:/etc/unlearnd:ro unlearnd \
#     --token-file /etc/unlearnd/tokens.jsonl --tls-cert /etc/unlearnd/tls.crt \
#     --tls-key /etc/unlearnd/tls.key --model mine=/models/mine
# The container listens on all interfaces, so it needs a --token-file (docs/security.md); it
# refuses to start without one unless --insecure is passed explicitly.
FROM debian:12 AS build
WORKDIR /src
COPY tools/setup.sh tools/setup.sh
RUN UNL_SETUP_NODE=0 tools/setup.sh
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DUNL_BUILD_TESTS=OFF \
      -DUNL_BUILD_BENCH=OFF \
 && cmake --build /build -j"$(nproc)" --target unlearnd unlearnctl unlearn-data unlearn-train

FROM debian:12
COPY tools/setup.sh /tmp/setup.sh
# Runtime libraries only would be smaller; the setup script keeps one source of truth for packages.
RUN UNL_SETUP_NODE=0 /tmp/setup.sh && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/server/unlearnd /build/client/unlearnctl /build/core/unlearn-data \
     /build/core/unlearn-train /usr/local/bin/
RUN useradd --system --home /var/lib/unlearnd unlearnd && mkdir -p /var/lib/unlearnd \
 && chown unlearnd /var/lib/unlearnd
USER unlearnd
EXPOSE 50051 9464
VOLUME /var/lib/unlearnd
ENTRYPOINT ["unlearnd", "--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464", \
            "--data-dir", "/var/lib/unlearnd"]
