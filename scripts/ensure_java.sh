#!/usr/bin/env bash
# Spark 4 needs a full Java 17 or 21 runtime (trimmed JREs from PyPI lack jdk.incubator.vector).
set -euo pipefail
java_major() {
  local v
  v=$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  echo "${v%%.*}"
}
find_java() {
  for j in "${JAVA_HOME:-}/bin/java" "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-21-openjdk-*/bin/java; do
    if [ -n "$j" ] && [ -x "$j" ]; then
      m=$(java_major "$j" || true)
      if [ "$m" = "17" ] || [ "$m" = "21" ]; then echo "$j"; return 0; fi
    fi
  done
  return 1
}
if find_java >/dev/null; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Java 17/21 not found: installing Debian's openjdk-17-jre-headless" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  find_java >/dev/null && exit 0
fi
echo "ERROR: Spark 4 needs a Java 17 or 21 runtime (JDK/JRE, not a trimmed PyPI JRE). Install e.g. 'apt-get install openjdk-17-jre-headless' or set JAVA_HOME." >&2
exit 1
