"""A labelled retrieval set for long-term memory: 200 CRM memories over 20
contacts (ten kinds of memory each: how to reach them, what they are called,
their CRM, budget, seats, decision-maker, deadline, competitor, pain point,
next step) and 60 queries, each with the key of the memory it must find.

The queries are paraphrases, never the stored text: other words for the same
thing ("phone" for "call", "price" for "budget", "who signs off" for "the
decision-maker"), other word order, other forms ("renewal" for "renews").
Each names the contact or the company, as an agent's question would, so it
can be asked org-wide as well as within the contact.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    first: str
    last: str
    company: str
    channel: str
    time: str
    nickname: str
    crm: str
    renewal: str
    budget: str
    product: str
    seats: int
    decider: str
    role: str
    deadline: str
    competitor: str
    pain: str
    next_step: str


PROFILES = (
    Profile("Annabel", "Smith", "Northwind Logistics", "phone calls", "in the morning",
            "Annie", "Salesforce", "March", "$40k", "the analytics add-on", 40,
            "Dana Cole", "CFO", "March 15", "Pipedrive", "duplicate contacts",
            "send the security questionnaire"),
    Profile("Bernard", "Okafor", "Contoso Foods", "email", "after lunch", "Bernie", "HubSpot",
            "June", "$12k", "the inbox module", 12, "Grace Lin", "VP of Sales", "the end of Q2",
            "Zoho", "slow reporting", "book a pricing workshop"),
    Profile("Carla", "Mendes", "Initech Health", "WhatsApp messages", "on Friday mornings",
            "Carlita", "Pipedrive", "September", "$85k", "the Enterprise plan", 120,
            "Tom Becker", "CTO", "October 1", "Salesforce", "missed follow-ups",
            "share a HIPAA compliance summary"),
    Profile("Deepak", "Rao", "Globex Capital", "video calls", "late in the afternoon", "Dee",
            "Dynamics", "January", "$150k", "the API tier", 300, "Priya Nair", "CEO",
            "the board meeting in May", "HubSpot", "manual data entry",
            "prepare a custom API sandbox"),
    Profile("Elena", "Petrova", "Umbrella Robotics", "Telegram", "before 9am", "Lena",
            "spreadsheets", "never (no contract)", "$8k", "the Starter plan", 6,
            "Ivan Petrov", "founder", "next month", "Close", "lost WhatsApp conversations",
            "set up a two-week trial"),
    Profile("Farid", "Haddad", "Hooli Media", "text messages", "in the evening", "Fred", "Zoho",
            "November", "$60k", "the campaign builder", 75, "Sara Klein", "head of marketing",
            "Black Friday", "Monday", "poor email deliverability",
            "run a deliverability audit"),
    Profile("Grace", "Kim", "Vandelay Imports", "email", "on Tuesdays", "Gracie", "Copper",
            "August", "$25k", "the mobile app", 30, "Art Vandelay", "owner", "the trade fair",
            "Pipedrive", "no mobile access", "send iOS beta invites"),
    Profile("Hiro", "Tanaka", "Stark Energy", "phone calls", "at noon Tokyo time", "Hiro-san",
            "Salesforce", "April", "$200k", "the forecasting module", 450, "Pepper Ortiz",
            "COO", "the fiscal year start in April", "Clari", "inaccurate forecasts",
            "model a forecast on last year's data"),
    Profile("Ines", "Garcia", "Wayne Legal", "email", "on weekdays only", "Nes", "Clio",
            "December", "$30k", "SSO", 45, "Bruce Lowe", "managing partner", "December 31",
            "HubSpot", "audit trail gaps", "send the SOC 2 report"),
    Profile("Jamal", "Brooks", "Acme Retail", "WhatsApp messages", "on Saturday mornings",
            "Jay", "Shopify notes", "never (no contract)", "$5k", "the WhatsApp connector", 4,
            "Jamal himself", "owner", "the holiday season", "Freshsales",
            "customers waiting for replies", "connect their WhatsApp number"),
    Profile("Kira", "Larsen", "Cyberdyne Labs", "video calls", "on Thursday afternoons",
            "Kiki", "Monday CRM", "July", "$70k", "the data warehouse sync", 90, "Miles Dyson",
            "head of data", "the Q3 planning cycle", "Snowflake native apps",
            "data silos between teams", "scope the Snowflake export"),
    Profile("Luca", "Rossi", "Soylent Travel", "phone calls", "between 2 and 4pm", "Luc",
            "Freshsales", "May", "$18k", "the dialer", 25, "Marta Bianchi", "sales director",
            "the summer season", "Aircall", "reps dialing by hand", "demo the power dialer"),
    Profile("Maya", "Cohen", "Tyrell Motors", "email", "early in the week", "May",
            "Salesforce", "February", "$120k", "the reporting suite", 200, "Eldon Tyrell",
            "CEO", "the dealer conference", "Tableau", "reports built in Excel",
            "rebuild their dealer dashboard"),
    Profile("Nils", "Berg", "Wonka Foods", "phone calls", "on Monday mornings", "Nilsy",
            "HubSpot", "October", "$35k", "the sequences feature", 50, "Charlie Bucket",
            "head of sales", "the chocolate festival", "Outreach", "generic outreach emails",
            "draft three sequence templates"),
    Profile("Olga", "Ivanova", "Aperture Science", "Telegram", "late at night", "Olya",
            "a homegrown CRM", "never (built in-house)", "$95k", "the API tier", 150,
            "Cave Johnson", "founder", "the product launch in June", "Salesforce",
            "their in-house CRM breaking", "plan the migration from the in-house CRM"),
    Profile("Priya", "Shah", "Gringotts Capital", "email", "with two days' notice",
            "Pri", "Dynamics", "March", "$250k", "SSO and audit logs", 500, "Griphook Vale",
            "CIO", "the regulator's review in September", "Salesforce Financial Cloud",
            "compliance reporting", "send the data residency documentation"),
    Profile("Quinn", "Murphy", "Oscorp Telecom", "text messages", "during commutes", "Q",
            "Salesforce", "June", "$55k", "the campaign builder", 80, "Norman Osborn",
            "CMO", "the 5G launch", "Braze", "churned subscribers",
            "show a win-back campaign example"),
    Profile("Rosa", "Delgado", "Massive Dynamic Insurance", "phone calls", "after 5pm",
            "Rosie", "Guidewire CRM", "November", "$110k", "the inbox module", 160,
            "William Bell", "COO", "open enrollment", "Zendesk", "claims emails lost in inboxes",
            "map their claims inbox routing"),
    Profile("Sven", "Nakamura", "Bluth Realty", "WhatsApp messages", "on Sunday evenings",
            "Svenny", "Excel", "never (no contract)", "$10k", "the mobile app", 8,
            "George Bluth", "chairman", "the spring open houses", "Follow Up Boss",
            "leads forgotten after open houses", "set up lead capture forms"),
    Profile("Tara", "Fischer", "Dunder Paper", "email", "on Wednesday mornings", "T",
            "Pipedrive", "September", "$22k", "the forecasting module", 35, "David Wallace",
            "CFO", "the end of the fiscal year", "Excel", "gut-feel forecasts",
            "send a forecasting ROI sheet"),
)

KINDS = ("reach", "nickname", "crm", "budget", "seats", "decider", "deadline", "competitor",
         "pain", "next")

MEMORIES: dict[str, tuple[str, str]] = {}  # key "c03.budget" -> (memory_type, content)
for _i, _p in enumerate(PROFILES):
    _c = f"c{_i:02d}"
    MEMORIES.update({
        f"{_c}.reach": ("preference", f"{_p.first} prefers {_p.channel} {_p.time}."),
        f"{_c}.nickname": ("preference", f"{_p.first} {_p.last} goes by {_p.nickname};"
                                         f" use that name in messages."),
        f"{_c}.crm": ("fact", f"{_p.company} runs {_p.crm} today; contract renews in"
                              f" {_p.renewal}."),
        f"{_c}.budget": ("fact", f"Budget at {_p.company} is {_p.budget} for {_p.product}."),
        f"{_c}.seats": ("fact", f"{_p.company} has {_p.seats} sales reps who would need"
                                f" licenses."),
        f"{_c}.decider": ("fact", f"{_p.decider} ({_p.role}) makes the final decision at"
                                  f" {_p.company}."),
        f"{_c}.deadline": ("deadline", f"{_p.company} wants to be live before {_p.deadline}."),
        f"{_c}.competitor": ("fact", f"{_p.company} is also evaluating {_p.competitor} as an"
                                     f" alternative."),
        f"{_c}.pain": ("fact", f"Biggest pain point at {_p.company}: {_p.pain}."),
        f"{_c}.next": ("fact", f"Next step with {_p.first}: {_p.next_step}."),
    })

# Paraphrases per kind: other words, other order, other forms.
_QUERIES: dict[str, str] = {
    "reach": "what time is best to phone or message {first}",
    "nickname": "which nickname does {first} {last} go by",
    "crm": "what CRM software is {company} on and when is the renewal",
    "budget": "how much money can {company} spend, what is the price range",
    "seats": "how many licenses or salespeople at {company}",
    "decider": "who signs off on the purchase at {company}, the approver",
    "deadline": "by when does {company} need to go live, the deadline",
    "competitor": "which competitor alternatives is {company} evaluating",
    "pain": "what pain or problem is {company} struggling with",
    "next": "what should the next step be with {first}",
}

QUERIES: tuple[tuple[str, int, tuple[str, ...]], ...] = tuple(
    (_QUERIES[kind].format(first=p.first, last=p.last, company=p.company), i,
     (f"c{i:02d}.{kind}",))
    for i, p in enumerate(PROFILES)
    for kind in (KINDS[(3 * i) % 10], KINDS[(3 * i + 1) % 10], KINDS[(3 * i + 2) % 10])
)
