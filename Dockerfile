# CPU image. The export stage (torch, optimum, nncf) exports and quantizes the default model once;
# the runtime stage is the serving install only (no torch) plus that cache.
#   docker build -t xscore .   then   docker run -p 8080:8080 -p 50051:50051 xscore
# Bake other models at build time: --build-arg MODELS="name=org/model other=org/model2"
FROM python:3.11-slim AS export
WORKDIR /src
COPY . .
RUN python -m venv /opt/export && /opt/export/bin/pip install --no-cache-dir '.[export]'
ENV XSCORE_CACHE=/var/cache/xscore HF_HUB_DISABLE_TELEMETRY=1
ARG MODELS=""
RUN /opt/export/bin/xscore --log-level WARNING score --query "warm up" "the default model's cache" > /dev/null \
 && for spec in $MODELS; do /opt/export/bin/xscore export "${spec#*=}" --variant int8 --variant fp32 || exit 1; done

FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN python -m venv /opt/xscore && /opt/xscore/bin/pip install --no-cache-dir . && rm -rf /src \
 && useradd --create-home --uid 10001 xscore
COPY --from=export --chown=xscore /var/cache/xscore /var/cache/xscore
ENV PATH=/opt/xscore/bin:$PATH XSCORE_CACHE=/var/cache/xscore XSCORE_HOST=0.0.0.0 HF_HUB_OFFLINE=1
USER xscore
WORKDIR /home/xscore
VOLUME ["/var/cache/xscore"]
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"
ENTRYPOINT ["xscore"]
CMD ["serve"]
