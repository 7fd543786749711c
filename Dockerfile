# The project with its Python environment and a system ffmpeg.
#   docker build -t cstp .            (docker-compose.yml builds it as cstp:latest)
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 cstp
WORKDIR /app

# Dependencies first, in their own layer: editing the source does not reinstall torch.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/deps.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/deps.txt && rm /tmp/deps.txt

COPY README.md ./
COPY preprocess preprocess
COPY shards shards
COPY train train
COPY eval eval
COPY configs configs
RUN pip install --no-cache-dir --no-deps -e . && chown -R cstp /app
USER cstp
ENV PYTHONUNBUFFERED=1
