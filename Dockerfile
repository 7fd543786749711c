# The project with its Python environment and a system ffmpeg.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY preprocess preprocess
COPY shards shards
COPY train train
COPY eval eval
COPY configs configs
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
