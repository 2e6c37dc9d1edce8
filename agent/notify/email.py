"""E-mail over SMTP: STARTTLS or implicit TLS, optional AUTH; the idempotency key is the Message-ID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.notify import Channel, DeliveryError


class EmailNotifier:
    """Sends a text/plain UTF-8 mail to the message's ``to`` or the configured recipients."""

    def __init__(
        self,
        channel: Channel,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        sender: str,
        to: Sequence[str],
        ca_file: Path | None,
    ):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self.host, self.security, self.username = host, security, username
        self.port = port or {"tls": 465, "starttls": 587}.get(security, 25)
        self.sender, self.to, self._password, self.ca_file = sender, tuple(to), password, ca_file

    def _tls(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def send(self, message: Mapping[str, Any], key: str) -> None:
        import smtplib
        from email.message import EmailMessage
        from email.utils import formatdate

        rcpt = list(message.get("to") or self.to)
        if not rcpt:
            raise DeliveryError("no recipients", retry=False)
        msg = EmailMessage()
        msg["Subject"] = str(message.get("title", ""))
        msg["From"] = self.sender
        msg["To"] = ", ".join(rcpt)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = f"<{key}@opsagent>"
        msg["Idempotency-Key"] = key
        msg.set_content(str(message.get("text", "")), charset="utf-8")
        try:
            if self.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self._tls())
                if self.username:
                    smtp.login(self.username, self._password)
                smtp.send_message(msg, from_addr=self.sender, to_addrs=rcpt)
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"SMTP authentication failed ({e.smtp_code})", retry=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("SMTP server refused the recipients", retry=False) from None
        except smtplib.SMTPResponseException as e:
            # 4xx replies are transient by definition (RFC 5321); 5xx are permanent
            raise DeliveryError(f"SMTP {e.smtp_code}", retry=400 <= e.smtp_code < 500) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError("SMTP server does not support STARTTLS or AUTH", retry=False) from None
        except (smtplib.SMTPException, OSError) as e:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise DeliveryError(f"SMTP connection failed: {why}", retry=True) from None


def build(channel: Channel, cfg: Any) -> EmailNotifier:
    password = cfg.password.reveal() if cfg.password else ""
    return EmailNotifier(
        channel, cfg.host, cfg.port, cfg.security, cfg.username, password, cfg.sender, cfg.to, cfg.ca_file
    )
