# shellcheck shell=bash
# Kafka's jars and tools, shared by the stack scripts (sourced, not run): both stacks run the jars
# infra/kafka/pom.xml names (Kafka from Maven Central), installed once per state dir, and start the same
# short-lived JVM for Kafka's command-line tools.
#
# Needs: KAFKA_SRC (infra/kafka), KAFKA_LIBS (where the jars go), and infra/lib/daemons.sh.

kafka_libs_stamp() { sha256sum "$KAFKA_SRC/pom.xml" | cut -d' ' -f1; }

# kafka_libs_current DIR: DIR holds the jars of the current infra/kafka/pom.xml.
kafka_libs_current() { [[ -f "$1/.complete" && "$(cat "$1/.complete")" == "$(kafka_libs_stamp)" ]]; }

# kafka_install_libs [FROM]: the jars into $KAFKA_LIBS unless they are current there: copied from FROM
# when it holds the current ones (another stack's), else from Maven Central.
kafka_install_libs() {
  local from="${1:-}"
  kafka_libs_current "$KAFKA_LIBS" && return 0
  rm -rf "$KAFKA_LIBS.tmp"
  mkdir -p "$KAFKA_LIBS.tmp"
  if [[ -n "$from" ]] && kafka_libs_current "$from"; then
    say "install: Kafka jars copied from $from"
    cp -p "$from"/*.jar "$KAFKA_LIBS.tmp"/
  else
    say "install: Kafka jars from Maven Central -> $KAFKA_LIBS"
    run_logged "mvn dependency:copy-dependencies" mvn -B -q -f "$KAFKA_SRC/pom.xml" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp"
  fi
  ls "$KAFKA_LIBS.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $KAFKA_LIBS.tmp"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  kafka_libs_stamp >"$KAFKA_LIBS/.complete"
}

# kafka_tool TIMEOUT_SECONDS MAIN_CLASS ARGS...  (one short-lived JVM)
kafka_tool() {
  local t="$1"; shift
  timeout "$t" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$KAFKA_SRC/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}
