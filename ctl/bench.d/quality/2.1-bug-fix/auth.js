const TOKENS = { "s3cr3t-token-alice": "alice", "s3cr3t-token-bob": "bob" };

// Lets a request through when it carries a known token, as the client sends it.
function requireToken(req, res, next) {
  const header = req.get("X-Auth-Token") || "";
  const token = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
  const user = TOKENS[token];
  if (!user) {
    return res.status(401).json({ error: "unauthorized" });
  }
  req.user = user;
  next();
}

module.exports = { requireToken };
