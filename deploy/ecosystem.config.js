// PM2: `pm2 start deploy/ecosystem.config.js` from the repository root.
// Exactly one beat per deployment: on the other machines start only the workers
// (`pm2 start deploy/ecosystem.config.js --only local,cloud`).
// kill_timeout outlasts Celery's warm shutdown, which waits for running tasks to finish.
const path = require("path");
const root = path.resolve(__dirname, "..");
const sovereign = path.join(root, ".venv", "bin", "sovereign");

function app(name, args, extra = {}) {
  return {
    name,
    cwd: root,
    script: sovereign,
    args,
    interpreter: "none",
    autorestart: true,
    max_restarts: 10,
    restart_delay: 2000,
    kill_timeout: 120000,
    env: { PYTHONUNBUFFERED: "1" },
    ...extra,
  };
}

module.exports = {
  apps: [
    // Remove `broker` when SOVEREIGN_BROKER_URL points at a Redis server. It restarts its
    // own Valkey if Valkey dies, keeps it on the same port, and Valkey stops with it even
    // when it is SIGKILLed; a second one on the same var/ exits 1 naming the first.
    app("broker", "broker", { kill_timeout: 30000 }),
    app("beat", "beat"),
    app("local", "worker local"),
    app("cloud", "worker cloud"),
    app("flower", "flower", { kill_timeout: 10000 }),
  ],
};
