"""OrderQuery PayStatus codes (PROTOCOL.md §9.4) and what the domain concludes from them.

Only 1A200, 1A400 and 1C400 were observed in public sources. The others are UNVERIFIED guesses that
follow the same shape ("1" + PayType + stage) and agree with sandbox/bank.py; an unknown code never
changes an order: it stays pending and is checked again later.
"""

from __future__ import annotations

PAID = frozenset({"1A400", "1C400"})  # observed: ATM paid, card authorised and captured
ATM_AWAITING = frozenset({"1A200"})  # observed: virtual account issued, not paid yet
ATM_OVERDUE = frozenset({"1A500", "1A600"})  # UNVERIFIED: past ExpireDate, unpaid (sandbox: 1A600)
CARD_AWAITING = frozenset({"1C200"})  # UNVERIFIED: payment link issued, not used yet
CARD_DECLINED = frozenset({"1C500"})  # UNVERIFIED: authorisation declined / failed
CARD_OVERDUE = frozenset({"1C600"})  # UNVERIFIED: payment link expired unused
