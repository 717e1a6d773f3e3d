# The archive on its embedded default, installed exactly as the README's first
# command does it.
FROM python:3.11-slim-bookworm
WORKDIR /opt/dicomvault
COPY . .
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir .
ENV DICOMVAULT_DATA_DIR=/var/lib/dicomvault DICOMVAULT_HOST=0.0.0.0
EXPOSE 8080 11112
CMD [".venv/bin/dicomvault", "serve"]
