#!/bin/sh
# Connection defaults for the local services started by kafka.sh / postgres.sh.
# Values already in the environment win, so pointing at external services is just
# a matter of exporting KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL beforehand.
# POSIX sh on purpose: make recipes run /bin/sh (dash), not bash.
#
#   . deploy/scripts/env.sh           # export into the current shell (sh or bash)
#   deploy/scripts/env.sh             # print KEY=value lines (e.g. for a Makefile or .env)

KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-19092}}"
DATABASE_URL="${DATABASE_URL:-postgresql://rebound:localdev-7f3a9c@127.0.0.1:${PGPORT_REBOUND:-15432}/rebound}"
export KAFKA_BOOTSTRAP_SERVERS DATABASE_URL

# Print only when executed directly, not when sourced.
case "${0##*/}" in
  env.sh)
    echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
    echo "DATABASE_URL=$DATABASE_URL"
    ;;
esac
