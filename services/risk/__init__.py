"""The risk service: decides every order before it can reach execution, records each decision, signs approvals
and fails closed."""
