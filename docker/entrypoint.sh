#!/bin/sh
# Entry point of the gr2 ray/scheduler containers.
#
# A Spark driver advertises SPARK_LOCAL_IP to the executors, and gr2 defaults it to 127.0.0.1 (right on a
# laptop, wrong in a container: executors in the spark-worker containers could not call back). Unless it is
# set already, use this container's address on the compose network.
if [ -z "${SPARK_LOCAL_IP:-}" ]; then
    SPARK_LOCAL_IP="$(hostname -i | awk '{print $1}')"
    export SPARK_LOCAL_IP
fi
exec "$@"
