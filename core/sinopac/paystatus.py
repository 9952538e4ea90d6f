"""OrderQuery PayStatus codes (PROTOCOL.md §9.4): the one table, read by core and emitted by the sandbox.

Only three codes are documented by the bank (seen in real replies): 1A200, 1A400 and 1C400. Every
other code below is OURS: invented in the same shape ("1" + PayType + stage) so that the sandbox can
show overdue, declined and unused-link orders and the domain can read them. The real bank may use
other codes for those cases; a code not in this table never changes an order (it stays pending and is
checked again later). sandbox/ imports these constants; core never imports the sandbox.
"""

from __future__ import annotations

# -- documented by the bank (PROTOCOL.md §9.4) -------------------------------------------------------
ATM_UNPAID = "1A200"  # virtual account issued, not paid yet
ATM_PAID = "1A400"  # transferred
CARD_CAPTURED = "1C400"  # card authorised and captured

# -- OURS: invented, not confirmed by any bank source ----------------------------------------------
ATM_OVERDUE = "1A600"  # past ExpireDate, unpaid
CARD_UNPAID = "1C200"  # payment link issued, not used yet
CARD_DECLINED = "1C500"  # authorisation declined
CARD_EXPIRED = "1C600"  # payment link expired unused (past ExpMinutes)

DOCUMENTED: frozenset[str] = frozenset({ATM_UNPAID, ATM_PAID, CARD_CAPTURED})
OURS: frozenset[str] = frozenset({ATM_OVERDUE, CARD_UNPAID, CARD_DECLINED, CARD_EXPIRED})

# -- what the codes mean, as sets --------------------------------------------------------------------
PAID_CODES: frozenset[str] = frozenset({ATM_PAID, CARD_CAPTURED})
OVERDUE_CODES: frozenset[str] = frozenset({ATM_OVERDUE, CARD_EXPIRED})
CARD_NOT_PAID: frozenset[str] = frozenset({CARD_UNPAID, CARD_EXPIRED})  # unpaid: expires once overdue
