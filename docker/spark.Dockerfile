# syntax=docker/dockerfile:1.7
# Spark master / worker image: Apache Spark 4.0.1 (Scala 2.13, Java 17) with gr2 installed, so executors
# can run gr2's Python UDFs, and the Delta Lake JARs baked into /opt/spark/jars.
#
# Versions move together: the image's Spark = pyspark in pyproject.toml (4.0.1); Delta 4.0.x is built for
# Spark 4.0 / Scala 2.13 (gr2/platform/spark.py DELTA_VERSION). tests/test_compose.py checks they agree.
#
# The official image is Ubuntu 22.04, whose python3 is 3.10; gr2 needs 3.11 and the executors' Python must
# have the drivers' minor version (the ray image is py311). So uv installs a standalone CPython 3.11 into
# /opt/gr2/venv, and PYSPARK_PYTHON points there (the ray image links the same path to its own 3.11).
FROM apache/spark:4.0.1-scala2.13-java17-python3-ubuntu

ARG DELTA_VERSION=4.0.1
ARG SCALA_BINARY=2.13
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

USER root

# Delta JARs from Maven Central at build time, pinned by SHA-256 (the artifacts whose Maven SHA-1s are
# 3e469898dc4ed083c735ae360beb063adcd12e9d and ebc5384d953c1d70d0ce4ceee42892da74051a81). To build
# offline, put the two JARs in docker/jars/ and replace these ADD lines with
# `COPY docker/jars/*.jar /opt/spark/jars/`.
ADD --checksum=sha256:a1e76860b19fe1e6b205a4ea7a9099a2f9575d39bb71d49b3e679b299d0efb91 \
    https://repo1.maven.org/maven2/io/delta/delta-spark_${SCALA_BINARY}/${DELTA_VERSION}/delta-spark_${SCALA_BINARY}-${DELTA_VERSION}.jar \
    /opt/spark/jars/
ADD --checksum=sha256:ecc42c5aaa51c423312d9e4e48aa4a12b34740bf2c37de0e8f279277ec3d12e4 \
    https://repo1.maven.org/maven2/io/delta/delta-storage/${DELTA_VERSION}/delta-storage-${DELTA_VERSION}.jar \
    /opt/spark/jars/
RUN chmod 644 /opt/spark/jars/delta-*.jar

# One uid for every gr2 container (the ray image's `ray` user is 1000:100): executors write lake files
# that drivers in the ray containers later replace or delete, on the shared /lake volume.
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash gr2 \
 && mkdir -p /lake /opt/gr2 \
 && chown -R 1000:100 /lake /opt/gr2 /opt/spark/work-dir

COPY --from=ghcr.io/astral-sh/uv:0.9.15 /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/gr2/python \
    UV_LINK_MODE=copy \
    PATH=/opt/gr2/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/gr2/venv/bin/python \
    SPARK_HOME=/opt/spark

USER 1000:100
WORKDIR /opt/gr2/app
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 gr2 ./gr2
RUN uv venv --python 3.11 /opt/gr2/venv \
 && uv pip install --python /opt/gr2/venv/bin/python --no-cache \
      --extra-index-url "${TORCH_INDEX}" --index-strategy unsafe-best-match . \
 && /opt/gr2/venv/bin/python -c "import gr2, pyspark; assert pyspark.__version__ == '4.0.1', pyspark.__version__"

WORKDIR /opt/spark/work-dir
# The base image's entrypoint runs any command given (`/opt/spark/bin/spark-class ...` in compose).
