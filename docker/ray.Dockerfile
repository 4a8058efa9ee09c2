# syntax=docker/dockerfile:1.7
# Ray head / worker image, and the scheduler's (same image, command /opt/gr2/nightly.sh): Ray 2.60.0 on
# Python 3.11 with gr2 and its training stack (torch CPU wheels), plus Java 17 and the Delta JARs, because
# gr2 jobs that run on Ray also drive Spark (a Spark driver in the Ray job, talking to spark-master).
# No separate scheduler image: it needs exactly gr2 and the Ray Jobs SDK, which this image has.
#
# Versions: the tag's Ray = ray[default,train] in pyproject.toml (2.60.0), checked by tests/test_compose.py.
# GPU nodes: use rayproject/ray:2.60.0-py311-gpu and drop TORCH_INDEX.
FROM rayproject/ray:2.60.0-py311-cpu

ARG DELTA_VERSION=4.0.1
ARG SCALA_BINARY=2.13
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

# The same Delta JARs as docker/spark.Dockerfile, where gr2 looks for them (configs/compose.yaml:
# spark.jars_dir), so sessions start offline.
ADD --checksum=sha256:a1e76860b19fe1e6b205a4ea7a9099a2f9575d39bb71d49b3e679b299d0efb91 \
    https://repo1.maven.org/maven2/io/delta/delta-spark_${SCALA_BINARY}/${DELTA_VERSION}/delta-spark_${SCALA_BINARY}-${DELTA_VERSION}.jar \
    /opt/gr2/jars/
ADD --checksum=sha256:ecc42c5aaa51c423312d9e4e48aa4a12b34740bf2c37de0e8f279277ec3d12e4 \
    https://repo1.maven.org/maven2/io/delta/delta-storage/${DELTA_VERSION}/delta-storage-${DELTA_VERSION}.jar \
    /opt/gr2/jars/

# /opt/gr2/venv/bin/python is the Python path every container shares (PYSPARK_PYTHON): Spark starts the
# executors' Python by the driver's path, and the spark image has its 3.11 there. Here it is Ray's.
COPY docker/entrypoint.sh docker/nightly.sh /opt/gr2/
RUN chmod 644 /opt/gr2/jars/*.jar && chmod 755 /opt/gr2/entrypoint.sh /opt/gr2/nightly.sh \
 && mkdir -p /opt/gr2/venv/bin /lake \
 && ln -s "$(command -v python)" /opt/gr2/venv/bin/python \
 && chown -R 1000:100 /opt/gr2 /lake

USER 1000:100
WORKDIR /opt/gr2/app
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 gr2 ./gr2
COPY --chown=1000:100 configs ./configs
# Keep the image's ray: the rayproject image already has ray[default,train,serve]==2.60.0, so pip leaves it alone.
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" . \
 && python -c "import gr2, ray, torch, pyspark; assert ray.__version__ == '2.60.0', ray.__version__"

ENV PYSPARK_PYTHON=/opt/gr2/venv/bin/python \
    GR2_LAKE=/lake
ENTRYPOINT ["/opt/gr2/entrypoint.sh"]
CMD ["bash"]
