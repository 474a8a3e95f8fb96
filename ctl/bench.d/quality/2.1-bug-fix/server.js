const express = require("express");
const { requireToken } = require("./auth");

const app = express();
app.use(express.json());

app.get("/api/notes", requireToken, (req, res) => {
  res.json({ user: req.user, notes: ["buy milk", "call Bob"] });
});

app.get("/health", (req, res) => res.json({ ok: true }));

module.exports = app;

if (require.main === module) {
  app.listen(process.env.PORT || 3000);
}
