# A GPU worker: PyTorch with CUDA from the official image, plus this package's worker extra.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
# torch is already in the image; the extra only adds scikit-learn and mnist1d.
RUN pip install ".[worker]"
# Fashion-MNIST's IDX files can be mounted at /usr/share/datasets/fashion-mnist.
CMD ["hpo", "worker", "--device", "auto"]
