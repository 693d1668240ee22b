"""What the pipeline needs to know about the team (managers, assignment, proofs), and reply proofs as evaluated.

Kept free of database code: worker processes that evaluate messages import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from interestd.config import AssignmentSettings, ManagerSettings, Settings


@dataclass(frozen=True)
class TeamRules:
    """What assigning cards and accepting proofs depend on (part of the pipeline's context)."""

    assignment: AssignmentSettings = field(default_factory=AssignmentSettings)
    managers: tuple[ManagerSettings, ...] = ()
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    attachments_dir: Path = Path("attachments")
    proof_max_bytes: int = 10 * 1024 * 1024
    proof_hosts: tuple[str, ...] = ()
    require_authenticated_proof: bool = False
    authserv_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TeamRules:
        return cls(
            settings.assignment,
            tuple(settings.managers),
            settings.zone,
            settings.attachments_dir,
            settings.proofs.max_bytes,
            tuple(settings.proofs.url_hosts),
            settings.security.require_authenticated_proof,
            settings.security.authserv_id,
        )

    def manager(self, login: str) -> ManagerSettings | None:
        return next((m for m in self.managers if m.login == login), None)

    def manager_by_address(self, address: str | None) -> ManagerSettings | None:
        address = (address or "").lower()
        return next((m for m in self.managers if address and address in m.emails), None)


@dataclass(frozen=True)
class ProofFile:
    """An image that came with a reply proof (by CLI or by mail), before it is stored."""

    name: str
    data: bytes


@dataclass(frozen=True)
class MailProof:
    """A manager's mail with [INT-n] in the subject: the evaluated part (pure), stored by record_mail_proof."""

    ref: int
    sender: str | None
    images: tuple[ProofFile, ...] = ()
    links: tuple[str, ...] = ()
    authenticated: bool = False  # the receiving server saw DKIM or SPF pass for the sender's domain
