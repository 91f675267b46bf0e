"""A local stand-in for api.twilio.com and content.twilio.com speaking Twilio's wire format."""
