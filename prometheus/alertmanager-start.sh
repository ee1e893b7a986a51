#!/bin/sh
# Alertmanager's start in compose (docker-compose.yml, service alertmanager; docs/operations.md "Configuring the
# receivers"). Alertmanager reads secrets only from files: this writes them from the environment into the secrets
# tmpfs, then writes the configuration Alertmanager runs with beside them and starts it.
#
# - LH_NOTIFY_WEBHOOK_TOKEN is required (the bearer token the notify service checks): unset, it stops here.
# - LH_INCIDENT_WEBHOOK_TOKEN set: the incident webhook gets every critical alert with that bearer token. Unset or
#   empty: the incident webhook's route (between the BEGIN/END incident-webhook route markers of alertmanager.yml) is
#   left out, so nothing is sent to it (never an empty bearer token), and this says so on stderr.
#
# Paths and the program can be changed for tests: LH_AM_CONFIG (the configuration in), LH_AM_SECRETS (the tmpfs),
# LH_AM_EXEC (Alertmanager). Further arguments go to Alertmanager.
set -eu
config_in="${LH_AM_CONFIG:-/etc/alertmanager/alertmanager.yml}"
secrets="${LH_AM_SECRETS:-/etc/alertmanager/secrets}"
effective="$secrets/alertmanager.yml"
umask 077

if [ -z "${LH_NOTIFY_WEBHOOK_TOKEN:-}" ]; then
    echo "alertmanager: LH_NOTIFY_WEBHOOK_TOKEN is not set: set it (at least 16 characters, deploy/env.example)" >&2
    exit 2
fi
printf '%s' "$LH_NOTIFY_WEBHOOK_TOKEN" > "$secrets/notify_webhook_token"
printf '%s' "${LH_SMTP_PASSWORD:-}" > "$secrets/smtp_password"

if [ -n "${LH_INCIDENT_WEBHOOK_TOKEN:-}" ]; then
    printf '%s' "$LH_INCIDENT_WEBHOOK_TOKEN" > "$secrets/incident_webhook_token"
    cp "$config_in" "$effective"
else
    rm -f "$secrets/incident_webhook_token"
    echo "alertmanager: LH_INCIDENT_WEBHOOK_TOKEN is not set: the incident webhook receives nothing (its route is" \
        "left out); set it to page your incident tool" >&2
    sed '/# BEGIN incident-webhook route/,/# END incident-webhook route/d' "$config_in" > "$effective"
    if grep -q 'receiver: incident-webhook' "$effective"; then
        echo "alertmanager: $config_in routes to incident-webhook outside its BEGIN/END markers: not started" >&2
        exit 2
    fi
fi

exec "${LH_AM_EXEC:-/bin/alertmanager}" --config.file="$effective" "$@"
