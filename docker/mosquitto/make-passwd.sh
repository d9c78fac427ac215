#!/bin/sh
# Make the Mosquitto password file for phasetwin (password_file of docker/mosquitto/mosquitto.conf).
#
# Usage: make-passwd.sh [-f FILE] [USER:PASSWORD ...]
#
# Users come from these environment variables (each one that is set and not empty) and from the arguments:
#   MQTT_TWIN_PASSWORD, MQTT_CONTROLLER_PASSWORD, MQTT_RECORDER_PASSWORD, MQTT_DASHBOARD_PASSWORD
#       the users twin, controller, recorder and dashboard of docker/mosquitto/acl;
#   MQTT_DEVICE_PASSWORDS
#       real devices as "DEVICE_ID:PASSWORD", separated by spaces; a device's user name is its device id.
# FILE (default: $MOSQUITTO_PASSWORD_FILE, else passwd next to this script) is replaced as a whole, mode 0600,
# only once every user is valid; passwords are hashed by `mosquitto_passwd -b` ($MOSQUITTO_PASSWD, else found
# on PATH or in /usr/sbin). The file and the passwords are never committed (docker/.gitignore).
# POSIX sh, so that it also runs in the eclipse-mosquitto image (the mosquitto-passwd step of compose.yaml).
#
# `mosquitto_passwd -b` takes the password as an argument: other users of this machine could see it in the
# process list for a moment. Run it where that does not matter (a container, your own machine).
set -eu

usage() {
    echo "usage: make-passwd.sh [-f FILE] [USER:PASSWORD ...]" >&2
    echo "  or set MQTT_TWIN_PASSWORD, MQTT_CONTROLLER_PASSWORD, MQTT_RECORDER_PASSWORD," >&2
    echo "  MQTT_DASHBOARD_PASSWORD and/or MQTT_DEVICE_PASSWORDS=\"DEVICE_ID:PASSWORD ...\"" >&2
    exit 2
}

die() {
    echo "make-passwd.sh: $*" >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
file=${MOSQUITTO_PASSWORD_FILE:-$here/passwd}
case ${1:-} in
    -h | --help) usage ;;
    -f)
        [ $# -ge 2 ] || usage
        file=$2
        shift 2
        ;;
    -*) usage ;;
esac

tool=${MOSQUITTO_PASSWD:-}
if [ -z "$tool" ]; then
    tool=$(PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin" command -v mosquitto_passwd || true)
fi
[ -n "$tool" ] || die "mosquitto_passwd not found: install the Debian package mosquitto, or use the
eclipse-mosquitto image: docker compose -f docker/compose.yaml run --rm mosquitto-passwd"

umask 077
dir=$(dirname "$file")
mkdir -p "$dir"
tmp=$(mktemp "$dir/.passwd.XXXXXX")
trap 'rm -f "$tmp"' EXIT
users=" "
count=0

add() { # add USER PASSWORD: check both, then hash them into the new file
    case $1 in
        "" | *[!A-Za-z0-9._-]*) die "user name '$1' must be letters, digits, '.', '_' or '-' (a topic segment)" ;;
    esac
    [ -n "$2" ] || die "the password of user '$1' is empty"
    case $users in
        *" $1 "*) die "user '$1' is given twice" ;;
    esac
    users="$users$1 "
    count=$((count + 1))
    "$tool" -b "$tmp" "$1" "$2" || die "mosquitto_passwd failed for user '$1'"
}

[ -z "${MQTT_TWIN_PASSWORD:-}" ] || add twin "$MQTT_TWIN_PASSWORD"
[ -z "${MQTT_CONTROLLER_PASSWORD:-}" ] || add controller "$MQTT_CONTROLLER_PASSWORD"
[ -z "${MQTT_RECORDER_PASSWORD:-}" ] || add recorder "$MQTT_RECORDER_PASSWORD"
[ -z "${MQTT_DASHBOARD_PASSWORD:-}" ] || add dashboard "$MQTT_DASHBOARD_PASSWORD"
# Word splitting of MQTT_DEVICE_PASSWORDS is intended (entries separated by spaces); no globbing, though.
set -f
for entry in ${MQTT_DEVICE_PASSWORDS:-} "$@"; do
    case $entry in
        *:*) add "${entry%%:*}" "${entry#*:}" ;;
        *) die "'$entry' is not USER:PASSWORD" ;;
    esac
done
set +f
[ "$count" -gt 0 ] || usage

mv -f "$tmp" "$file"
trap - EXIT
echo "make-passwd.sh: wrote $count user(s) to $file:$users"
