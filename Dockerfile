# izray cluster image: Ray's GPU image of the Ray version izray pins, plus izray and its
# locked GPU dependencies (requirements/gpu.lock: vllm with its CUDA torch). Head and GPU
# workers run this same image, so a node that joins at 2 am runs the versions the head runs.
#
#   docker build -t REGISTRY/izray:$(git rev-parse --short HEAD) .
#   docker push REGISTRY/izray:TAG      # then set the tag in cluster/ray-cluster.yaml or
#                                       # cluster/kuberay-rayjob.yaml
#
# The image holds no API key and no data: the key comes from the node's environment or a
# Kubernetes Secret, tasks and models from the shared volume (cluster/README.md).

# Must equal the ray pin in setup.cfg (client and cluster run the same Ray; tests check it).
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu
ARG RAY_VERSION

WORKDIR /home/ray/izray
# Dependencies first: this layer is rebuilt only when the lock or the package metadata change.
COPY --chown=ray:users setup.cfg pyproject.toml README.md ./
COPY --chown=ray:users requirements/ requirements/
COPY --chown=ray:users izray/ izray/
RUN pip install --no-cache-dir -c requirements/gpu.lock '.[gpu]' \
    && python -c "import izray, vllm, torch, ray, botorch; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

ENV PYTHONUNBUFFERED=1 \
    IZRAY_CACHE_DIR=/shared/cache/izray \
    HF_HOME=/shared/cache/huggingface
