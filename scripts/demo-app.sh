#!/bin/sh
# The demo's "application": it shows what secret-fetch handed it, with every value redacted.
cfg=$1
echo "app: running as PID $$ (secret-fetch exec'd into it: same PID, no Node process left)"
echo "app: $cfg: mode $(stat -c '%a, owner %U' "$cfg"), $(stat -c '%s' "$cfg") bytes, on $(stat -f -c '%T' "$(dirname "$cfg")")"
for name in SECRET_KEY SQLALCHEMY_DATABASE_URI MAIL_PASSWORD DEBUG ADMINS; do
  eval "value=\${$name-}"
  if [ -n "$value" ]; then
    echo "app: \$$name is set: [redacted, ${#value} characters]"
  else
    echo "app: \$$name is not set"
  fi
done
