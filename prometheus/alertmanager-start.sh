#!/bin/sh
# Alertmanager's start in compose (docker-compose.yml, service alertmanager; docs/operations.md "Configuring the
# receivers"). Alertmanager reads secrets only from files: this writes them from the environment into the secrets
# tmpfs, then writes the configuration Alertmanager runs with beside them and starts it.
#
# - LH_NOTIFY_WEBHOOK_TOKEN is required (the bearer token the notify service checks): unset or shorter than 16
#   characters, it stops here.
# - LH_INCIDENT_WEBHOOK_TOKEN set: the incident webhook gets every critical alert with that bearer token. Unset or
#   empty: the incident webhook's route (between the BEGIN/END incident-webhook route markers of alertmanager.yml) is
#   left out, so nothing is sent to it (never an empty bearer token), and this says so on stderr. It stops instead
#   when the markers are not there exactly once each (BEGIN before END), or when a route to incident-webhook is left
#   outside them.
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
if [ "${#LH_NOTIFY_WEBHOOK_TOKEN}" -lt 16 ]; then
    # the notify service refuses a shorter one at its start: Alertmanager's posts would all be refused
    echo "alertmanager: LH_NOTIFY_WEBHOOK_TOKEN is shorter than 16 characters: set a longer one" \
        "(deploy/env.example); not started" >&2
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
    # Both markers exactly once, BEGIN first: without its END, sed would delete every route after BEGIN.
    begins=$(grep -c '# BEGIN incident-webhook route' "$config_in" || true)
    ends=$(grep -c '# END incident-webhook route' "$config_in" || true)
    if [ "$begins" != 1 ] || [ "$ends" != 1 ]; then
        echo "alertmanager: $config_in must hold '# BEGIN incident-webhook route' and '# END incident-webhook" \
            "route' exactly once each (found $begins and $ends): not started" >&2
        exit 2
    fi
    begin_line=$(grep -n '# BEGIN incident-webhook route' "$config_in" | cut -d: -f1)
    end_line=$(grep -n '# END incident-webhook route' "$config_in" | cut -d: -f1)
    if [ "$end_line" -le "$begin_line" ]; then
        echo "alertmanager: $config_in has its '# END incident-webhook route' marker before its BEGIN: not" \
            "started" >&2
        exit 2
    fi
    sed '/# BEGIN incident-webhook route/,/# END incident-webhook route/d' "$config_in" > "$effective"
    # any route left to incident-webhook, quoted or not ("receiver": 'incident-webhook', {receiver: incident-webhook})
    if grep -Eq "receiver[\"']?[[:space:]]*:[[:space:]]*[\"']?incident-webhook([\"'[:space:],}]|\$)" "$effective"; then
        echo "alertmanager: $config_in routes to incident-webhook outside its BEGIN/END markers: not started" >&2
        exit 2
    fi
fi

exec "${LH_AM_EXEC:-/bin/alertmanager}" --config.file="$effective" "$@"
