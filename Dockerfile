# CPU image: the serving install (no torch) plus the export extra only in a build stage.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN python -m venv /opt/xscore && /opt/xscore/bin/pip install --no-cache-dir '.[export]'
# Bake the default model's export into the image so containers start without torch work.
ENV XSCORE_CACHE=/var/cache/xscore
RUN /opt/xscore/bin/xscore score --query "warm up" "the cache" > /dev/null

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 xscore
COPY --from=build /opt/xscore /opt/xscore
COPY --from=build --chown=xscore /var/cache/xscore /var/cache/xscore
ENV PATH=/opt/xscore/bin:$PATH XSCORE_CACHE=/var/cache/xscore
USER xscore
VOLUME ["/var/cache/xscore"]
ENTRYPOINT ["xscore"]
CMD ["models", "list"]
