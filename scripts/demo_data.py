"""Realistic booking data for the demo tenant: a salon with a few locations, services and staff,
~5,000 customers and their appointment history (past year) and upcoming bookings.

Deterministic (seeded), with the untidiness of real data: phones typed in several formats,
some family members sharing one number, a few numbers that cannot be parsed, cancellations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST_NAMES = (
    "Olivia Emma Ava Sophia Isabella Mia Amelia Harper Evelyn Abigail Emily Ella Elizabeth Camila Luna Sofia "
    "Avery Mila Aria Scarlett Liam Noah Oliver Elijah James William Benjamin Lucas Henry Theodore Jack Levi "
    "Alexander Jackson Mateo Daniel Michael Mason Sebastian Ethan Logan Owen Samuel Jacob Asher Aiden John "
    "Joseph Wyatt David Leo Luke Julian Hudson Grayson Matthew Ezra Gabriel Carter Isaac Jayden Luca Anthony "
    "Dylan Lincoln Thomas Maverick Elias Josiah Charles Caleb Christopher Ezekiel Miles Jaxon Isaiah Andrew"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
    "Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins "
    "Reyes"
).split()
SERVICES = [
    ("svc-cut", "Haircut"),
    ("svc-color", "Hair colouring"),
    ("svc-blowdry", "Blow-dry"),
    ("svc-mani", "Manicure"),
    ("svc-pedi", "Pedicure"),
    ("svc-facial", "Facial treatment"),
    ("svc-massage", "Relaxing massage"),
    ("svc-brows", "Brow shaping"),
]
LOCATIONS = [
    ("loc-downtown", "Downtown Studio", "120 Market St, San Francisco, CA"),
    ("loc-mission", "Mission Salon", "2400 Mission St, San Francisco, CA"),
    ("loc-oakland", "Oakland Lounge", "410 Grand Ave, Oakland, CA"),
]
STAFF = [
    ("stf-ana", "Ana"),
    ("stf-ben", "Ben"),
    ("stf-chloe", "Chloe"),
    ("stf-dev", "Dev"),
    ("stf-eli", "Eli"),
]
AREA_CODES = ("415", "510", "650", "408", "925", "707")
PHONE_FORMATS = ("+1{a}{p}{s}", "({a}) {p}-{s}", "{a}-{p}-{s}", "1{a}{p}{s}", "{a}.{p}.{s}", "+1 {a} {p} {s}")


@dataclass(frozen=True)
class DemoData:
    services: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    staff: list[dict[str, Any]]
    customers: list[dict[str, Any]]
    appointments: list[dict[str, Any]]


def _phone(rng: random.Random) -> str:
    area = rng.choice(AREA_CODES)
    prefix = str(rng.randint(200, 989))
    suffix = f"{rng.randint(0, 9999):04d}"
    return rng.choice(PHONE_FORMATS).format(a=area, p=prefix, s=suffix)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def generate(customers: int = 5_000, *, seed: int = 7, now: datetime | None = None) -> DemoData:
    rng = random.Random(seed)
    clock = (now or datetime.now(UTC)).replace(microsecond=0)
    people: list[dict[str, Any]] = []
    phones: list[str] = []
    for index in range(customers):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        roll = rng.random()
        if roll < 0.03 and phones:
            phone = rng.choice(phones)  # a family sharing one number
        elif roll < 0.045:
            phone = rng.choice(["n/a", "ask at desk", "555"])  # what front desks type
        else:
            phone = _phone(rng)
            phones.append(phone)
        people.append(
            {
                "external_id": f"cust-{index:05d}",
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{last.lower()}{index}@example.com",
                "phone": phone,
            }
        )
    appointments: list[dict[str, Any]] = []
    for person in people:
        for _ in range(min(int(rng.expovariate(1 / 2.5)), 15)):
            starts = clock + timedelta(days=rng.uniform(-365, 30), hours=rng.randint(-4, 4))
            starts = starts.replace(minute=rng.choice((0, 15, 30, 45)), second=0, microsecond=0)
            created = starts - timedelta(days=rng.uniform(0.5, 30))
            created = min(created, clock - timedelta(minutes=5)).replace(microsecond=0)
            status = rng.choices(["approved", "pending", "canceled", "rejected"], weights=[80, 8, 10, 2])[0]
            if starts > clock and status == "approved" and rng.random() < 0.3:
                status = "pending"
            changed = (
                created + (starts - created) * rng.random() if status in ("canceled", "rejected") else created
            )
            changed = changed.replace(microsecond=0)
            service = rng.choice(SERVICES)
            appointments.append(
                {
                    "external_id": f"appt-{len(appointments):06d}",
                    "customer_id": person["external_id"],
                    "service_id": service[0],
                    "location_id": rng.choice(LOCATIONS)[0],
                    "staff_id": rng.choice(STAFF)[0],
                    "starts_at": _iso(starts),
                    "ends_at": _iso(starts + timedelta(minutes=rng.choice((30, 45, 60, 90)))),
                    "created_at": _iso(created),
                    "status": status,
                    "status_changed_at": _iso(min(changed, clock)),
                }
            )
    return DemoData(
        services=[{"external_id": sid, "name": name} for sid, name in SERVICES],
        locations=[
            {"external_id": lid, "name": name, "address": address} for lid, name, address in LOCATIONS
        ],
        staff=[{"external_id": sid, "name": name} for sid, name in STAFF],
        customers=people,
        appointments=appointments,
    )
